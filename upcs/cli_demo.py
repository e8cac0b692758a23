"""`upcs demo`: the main job on embedded defaults (issue 3, README).

Builds a demo list of Ofcom drama numbers in a temporary directory, starts the gateway on
loopback in front of a demo trunk that answers, places sample calls (allowed, blocked in several
evasion forms, invalid, emergency) through it from a demo phone, prints each verdict, then keeps
serving with the metrics URL shown until Ctrl-C / SIGTERM. `--calls-only` exits after the calls
(status 1 if any verdict was not the expected one).
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from blocklist import DialPlan, ListHolder, ListSnapshot, write_snapshot
from gateway.app import Follower, Gateway, GatewayStartError
from gateway.demo_peers import DemoPhone, DemoTrunk
from gateway.metrics import GatewayMetrics
from gateway.options import UsageError, parse_hostport
from gateway.settings import GatewaySettings
from gateway.sip import Screened
from gateway.transport.endpoint import Endpoint
from upcs.cli_gateway import run_event_loop, setup_logging

__all__ = ["DEMO_BARRED", "SAMPLE_CALLS", "SampleCall", "app"]

app = typer.Typer(help="Run the gateway on loopback with a demo list, trunk and sample calls.")

# Ofcom's drama ranges are the only numbers safe to use (common.md): none of them is anyone's.
DEMO_BARRED = ("+447700900123", "+442079460456", "+441632960789", "+441134960001")
DEMO_LIST_VERSION = 1
# The demo gateway drains quickly: nothing is in flight once the sample calls are done.
DEMO_DRAIN_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SampleCall:
    label: str  # what the demo says the call shows
    user: str  # the Request-URI user part, already %-escaped as a PBX would send it
    expect: str  # the gateway's verdict we expect: allowed | blocked | invalid


SAMPLE_CALLS: tuple[SampleCall, ...] = (
    SampleCall("a number nobody barred", "07700%20900999", "allowed"),
    SampleCall("a barred mobile, national form", "07700%20900123", "blocked"),
    SampleCall("the same, international with spaces", "+44%207700%20900123", "blocked"),
    SampleCall("outside line 9 + 00 44", "9%2000%2044%207700%20900123", "blocked"),
    SampleCall("141 (withhold my number) first", "141%20020%207946%200456", "blocked"),
    SampleCall("local London number, no area code", "7946%200456", "blocked"),
    SampleCall("overdialled digits after the number", "01632960789123", "blocked"),
    SampleCall("a %-escaped + sign", "%2B441134960001", "blocked"),
    SampleCall("letter O in place of zero", "07700%209OO123", "invalid"),
    SampleCall("emergency 999 (can never be barred)", "999", "allowed"),
    SampleCall("Samaritans 116 123 (never barred)", "116123", "allowed"),
)


def _metrics_url(gateway: Gateway) -> str | None:
    if gateway.settings.metrics is None or gateway.metrics_port is None:
        return None
    host = gateway.settings.metrics[0]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{gateway.metrics_port}/metrics"


async def _demo(workdir: Path, metrics: tuple[str, int], calls_only: bool) -> int:
    snapshot_path = workdir / "demo-list.snap"
    write_snapshot(snapshot_path, ListSnapshot.from_e164(DEMO_BARRED, DEMO_LIST_VERSION))
    typer.echo(f"demo list: {len(DEMO_BARRED)} barred Ofcom drama numbers in {snapshot_path}")
    trunk = DemoTrunk()
    await trunk.start()
    settings = GatewaySettings(
        listen=(Endpoint("udp", "127.0.0.1", 0),),
        upstream=Endpoint("udp", "127.0.0.1", trunk.port),
        snapshot_path=snapshot_path,
        metrics=metrics,
        drain_timeout_s=DEMO_DRAIN_TIMEOUT_S,
    )

    def follow_file(holder: ListHolder) -> Follower:
        import sync

        return sync.SnapshotFileFollower(snapshot_path, holder)

    gateway = Gateway(
        settings,
        DialPlan(),
        ListSnapshot.from_e164(DEMO_BARRED, DEMO_LIST_VERSION),
        follower_factory=follow_file,
        metrics=GatewayMetrics(),
    )
    verdicts: dict[str, str] = {}

    def remember(events: Sequence[Any]) -> None:
        for ev in events:
            if isinstance(ev, Screened) and ev.method == "INVITE":
                verdicts[ev.call_id] = ev.verdict

    gateway.add_event_listener(remember)
    phone: DemoPhone | None = None
    try:
        await gateway.start()
        host, port = gateway.udp_addresses[0]
        typer.echo(f"gateway: udp {host}:{port} -> demo trunk udp 127.0.0.1:{trunk.port}")
        phone = DemoPhone((host, port))
        await phone.start()
        typer.echo("")
        typer.echo(f"  {'dialled':24} {'verdict':8} {'PBX got':24} shows")
        wrong = 0
        for sample in SAMPLE_CALLS:
            result = await phone.call_user(sample.user)
            verdict = verdicts.get(result.call_id, "none")
            answer = f"{result.status} {result.reason}" if result.status else result.reason
            mark = "" if verdict == sample.expect else f"  <-- expected {sample.expect}"
            wrong += verdict != sample.expect
            dialled = urllib.parse.unquote(sample.user)
            typer.echo(f"  {dialled:24} {verdict:8} {answer:24} {sample.label}{mark}")
        typer.echo("")
        typer.echo(
            f"{len(SAMPLE_CALLS) - wrong} of {len(SAMPLE_CALLS)} verdicts as expected; "
            f"the trunk answered {trunk.calls_answered} calls"
        )
        url = _metrics_url(gateway)
        if calls_only:
            return 1 if wrong else 0
        typer.echo(f"metrics at {url} (also /healthz, /readyz); Ctrl-C to stop")
        typer.echo(f"send your own calls to sip:NUMBER@{host}:{port} (udp)")
        await gateway.serve()
        return 1 if wrong else 0
    finally:
        if phone is not None:
            phone.close()
        await gateway.shutdown()  # idempotent: a no-op after serve() has drained
        trunk.close()


@app.callback(invoke_without_command=True)
def demo(
    calls_only: Annotated[
        bool, typer.Option("--calls-only", help="Exit after the sample calls (for tests).")
    ] = False,
    metrics: Annotated[
        str, typer.Option("--metrics", help="HOST:PORT for /metrics (port 0: any free port).")
    ] = "127.0.0.1:0",
    log_level: Annotated[str, typer.Option("--log-level", help="Gateway log level.")] = "warning",
) -> None:
    """Run the gateway on loopback with a demo list, a demo trunk and sample calls."""
    try:
        where = parse_hostport(metrics, "--metrics")
    except UsageError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        typer.echo(
            f"Error: --log-level: {log_level!r} is not debug, info, warning or error", err=True
        )
        raise typer.Exit(2)
    setup_logging(log_level.lower())
    with tempfile.TemporaryDirectory(prefix="upcs-demo-") as tmp:
        try:
            code = run_event_loop(lambda: _demo(Path(tmp), where, calls_only))
        except (GatewayStartError, OSError) as exc:
            typer.echo(f"upcs demo: {exc}", err=True)
            raise typer.Exit(1) from None
    raise typer.Exit(code)
