"""`upcs gateway run` settings: flags over `[gateway]` over defaults, errors naming the flag."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from gateway.options import CliGatewayArgs, UsageError, resolve_settings
from gateway.settings import DEFAULT_ALLOW_FROM
from gateway.transport.endpoint import Endpoint

BASE = CliGatewayArgs(
    snapshot=Path("list.snap"), listen=("udp:127.0.0.1:5060",), upstream="udp:127.0.0.1:5080"
)


def _args(**kw: Any) -> CliGatewayArgs:
    fields = {**BASE.__dict__, **kw}
    return CliGatewayArgs(**fields)


def test_defaults() -> None:
    s = resolve_settings(BASE, {})
    assert s.listen == (Endpoint("udp", "127.0.0.1", 5060),)
    assert s.upstream == Endpoint("udp", "127.0.0.1", 5080)
    assert s.allow_from == DEFAULT_ALLOW_FROM  # loopback only: no open relay
    assert s.record_route is True
    assert s.refusal_status == 403
    assert s.workers == 1
    assert s.metrics is None
    assert s.max_list_age_s is None


def test_config_section_supplies_everything() -> None:
    section = {
        "snapshot": "/var/lib/upcs/list.snap",
        "listen": ["udp:[::1]:5060", "tcp:127.0.0.1:5060"],
        "upstream": "udp:10.0.0.9:5060",
        "allow_from": ["10.1.0.0/16"],
        "metrics": "[::1]:9100",
        "record_route": False,
        "refusal_status": 404,
        "workers": 2,
        "max_list_age_s": 600,
        "t1_s": 0.25,
        "retry_after_s": 7,
        "shed_backlog_bytes": 0,
    }
    s = resolve_settings(CliGatewayArgs(), section)
    assert s.snapshot_path == Path("/var/lib/upcs/list.snap")
    assert s.listen[0] == Endpoint("udp", "::1", 5060)
    assert s.allow_from == (ipaddress.ip_network("10.1.0.0/16"),)
    assert s.metrics == ("::1", 9100)
    assert s.record_route is False
    assert s.refusal_status == 404
    assert s.workers == 2
    assert s.max_list_age_s == 600.0
    assert s.timers_s == {"t1_s": 0.25}
    assert s.retry_after_s == 7
    assert s.shed_backlog_bytes == 0  # overload shedding off


def test_flags_override_config() -> None:
    section = {"record_route": False, "workers": 4, "upstream": "udp:10.0.0.9:5060"}
    s = resolve_settings(_args(record_route=True, workers=2), section)
    assert s.record_route is True
    assert s.workers == 2
    assert s.upstream == Endpoint("udp", "127.0.0.1", 5080)


@pytest.mark.parametrize(
    ("args", "section", "where"),
    [
        (_args(listen=()), {}, "--listen"),
        (_args(listen=("udp:::1:5060",)), {}, "--listen"),
        (_args(upstream=None), {}, "--upstream"),
        (_args(upstream="udp:127.0.0.1:0"), {}, "--upstream"),
        (_args(allow_from=("everyone",)), {}, "--allow-from"),
        (_args(metrics="9100"), {}, "--metrics"),
        (_args(snapshot=None), {}, "--snapshot"),
        (_args(workers=0), {}, "--workers"),
        (_args(refusal_status=200), {}, "--refusal-status"),
        (_args(max_list_age_s=-1.0), {}, "--max-list-age"),
        (_args(redis="redis://127.0.0.1:6379/0"), {}, "--site"),
        (_args(site="hmp-x"), {}, "--site"),
        (BASE, {"wokers": 2}, "[gateway]"),
        (BASE, {"workers": "two"}, "[gateway] workers"),
        (BASE, {"record_route": "yes"}, "[gateway] record_route"),
        (BASE, {"t1_s": True}, "[gateway] t1_s"),
        (BASE, {"t1_s": 0}, "[gateway] t1_s"),
        (BASE, {"shed_backlog_bytes": -1}, "[gateway] shed_backlog_bytes"),
        (_args(listen=()), {"listen": 5060}, "[gateway] listen"),
    ],
)
def test_usage_errors_name_the_flag_or_key(
    args: CliGatewayArgs, section: dict[str, Any], where: str
) -> None:
    with pytest.raises(UsageError) as info:
        resolve_settings(args, section)
    assert info.value.where == where


def test_allow_empty_needs_no_snapshot() -> None:
    s = resolve_settings(_args(snapshot=None, allow_empty=True), {})
    assert s.snapshot_path is None and s.allow_empty
