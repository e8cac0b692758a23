"""`upcs sync add|remove|publish|status` (DESIGN.md contract) against the real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from pyroaring import FrozenBitMap64
from typer.testing import CliRunner

from blocklist import ListSnapshot, write_snapshot
from sync import Keys, SiteReport
from sync.wire import encode_site
from upcs.cli_sync import app

pytestmark = pytest.mark.redis

runner = CliRunner()


@pytest.fixture
def sync_redis(redis_url: str, prefix: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"{{{prefix}:sync}}*"))
    if keys:
        client.delete(*keys)
    client.close()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_add_remove_and_status_json(sync_redis: redis.Redis, redis_url: str, prefix: str) -> None:
    common = ("--redis", redis_url, "--key-prefix", prefix)
    code, out, err = invoke("add", *common, "--ref", "case-1", "07700 900123", "+44 20 7946 0001")
    assert code == 0, err
    assert "versions 1..2" in out
    assert "+447700900123" not in out + err  # numbers are not echoed
    code, out, _ = invoke("remove", *common, "--json", "07700900123")
    assert code == 0 and json.loads(out) == {
        "op": "remove",
        "changes": 1,
        "first_version": 3,
        "last_version": 3,
    }
    keys = Keys(prefix)
    sync_redis.hset(keys.sites, "hmp-a", encode_site(SiteReport("hmp-a", 3, "x", 1, 1e9)))
    code, out, _ = invoke("status", *common, "--json")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["kind"] == "hub" and lines[0]["version"] == 3 and lines[0]["sites"] == 1
    assert lines[1]["kind"] == "site" and lines[1]["site"] == "hmp-a"
    assert lines[1]["lag_versions"] == 0 and lines[1]["in_sync"] is False  # wrong checksum
    assert lines[1]["reporting"] is False  # its report is from 2001
    code, out, _ = invoke("status", *common)
    assert code == 0 and "version 3" in out and "hmp-a" in out
    assert "SILENT (last report: CHECKSUM DIFFERS)" in out


def test_same_idempotency_key_twice_publishes_once(
    sync_redis: redis.Redis, redis_url: str, prefix: str
) -> None:
    common = ("--redis", redis_url, "--key-prefix", prefix, "--idempotency-key", "op-1")
    assert invoke("add", *common, "07700900001")[0] == 0
    code, out, _ = invoke("add", *common, "07700900001")
    assert code == 0 and "versions 1..1" in out
    assert sync_redis.xlen(Keys(prefix).log) == 1


@pytest.mark.parametrize(
    ("number", "reason"),
    [("999", "emergency"), ("116123", "helpline"), ("077009001234567", "not a possible number")],
)
def test_refused_numbers_publish_nothing(
    sync_redis: redis.Redis, redis_url: str, prefix: str, number: str, reason: str
) -> None:
    code, _, err = invoke(
        "add", "--redis", redis_url, "--key-prefix", prefix, "07700900001", number
    )
    assert code == 2
    assert "number 2 of 2 refused" in err and reason in err and "nothing published" in err
    assert sync_redis.exists(Keys(prefix).log) == 0


def test_publish_snapshot_file(
    sync_redis: redis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.snap"
    snap = ListSnapshot(FrozenBitMap64([447700900001, 447700900002]), 9)
    write_snapshot(path, snap)
    code, out, err = invoke(
        "publish", "--redis", redis_url, "--key-prefix", prefix, "--snapshot", str(path), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {"version": 1, "entries": 2, "checksum": snap.checksum}
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"not a snapshot")
    code, _, err = invoke(
        "publish", "--redis", redis_url, "--key-prefix", prefix, "--snapshot", str(bad)
    )
    assert code == 1 and "bad.snap" in err and "Traceback" not in err


def test_unreachable_redis_is_exit_1_without_traceback(tmp_path: Path) -> None:
    code, _, err = invoke("status", "--redis", "redis://:pw@127.0.0.1:1/0", "--timeout-s", "0.5")
    assert code == 1
    assert "cannot reach Redis" in err and "Traceback" not in err and "pw" not in err
    code, _, err = invoke(
        "add", "--redis", "redis://127.0.0.1:1/0", "--timeout-s", "0.3", "07700900001"
    )
    assert code == 1 and "unreachable" in err


def test_usage_errors_are_exit_2() -> None:
    assert invoke("status")[0] == 2  # --redis missing
    assert invoke("add", "--redis", "nonsense://x", "07700900001")[0] == 2
