"""Microsecond SIP latencies from a loopback capture, for bench/sip_load.py.

sipp's own response times have a 1 ms clock and quantise at ~4 ms on this box (the anchor's
RESULTS.md: p50 0, p99 4 ms whatever the proxy), useless for sub-millisecond proxies. So the
bench captures the loopback traffic with `dumpcap` (Wireshark's capture engine, Debian package
`tshark`) into a classic pcap file with kernel timestamps, and this module matches packets by
Call-ID (first transmission of each message only):

  blocked_403   INVITE uac->proxy  ->  403 proxy->uac           (a barred dial, whole answer)
  allowed_200   INVITE uac->proxy  ->  200 proxy->uac           (includes the sipp trunk)
  trying_100    INVITE uac->proxy  ->  100 proxy->uac
  fwd_invite    INVITE uac->proxy  ->  INVITE proxy->uas        (proxy work on the request)
  fwd_200       200 uas->proxy     ->  200 proxy->uac           (proxy work on the answer)
  proxy_added   fwd_invite + fwd_200, per allowed call          (what the proxy adds to a call)
"""

from __future__ import annotations

import contextlib
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["Capture", "analyse", "percentile"]

CAPTURE_BUFFER_MIB = 64  # dumpcap kernel buffer: 200 calls/s is ~2,000 packets/s, tiny
CAPTURE_START_TIMEOUT_S = 10.0
SNAPLEN = 1500  # SIP headers fit; bodies are not needed
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_NULL = 0
_DUMPCAP = ("dumpcap", "-q", "-i", "lo", "-P")  # -P: classic pcap, read by _packets below


class Capture:
    """dumpcap on lo for the given UDP ports, written as pcap (-P)."""

    def __init__(self, path: Path, ports: list[int]) -> None:
        self.path = path
        self.ports = ports
        self.proc: subprocess.Popen[bytes] | None = None
        self.err_path = path.with_suffix(".err")

    def start(self) -> None:
        flt = " or ".join(f"udp port {p}" for p in self.ports)
        err = open(self.err_path, "wb")  # noqa: SIM115 - closed after Popen has it
        self.proc = subprocess.Popen(
            [
                *_DUMPCAP,
                "-s",
                str(SNAPLEN),
                "-B",
                str(CAPTURE_BUFFER_MIB),
                "-f",
                flt,
                "-w",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        err.close()
        deadline = time.monotonic() + CAPTURE_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dumpcap exited: {self.err_path.read_text(errors='replace')}")
            if "Capturing on" in self.err_path.read_text(errors="replace"):
                time.sleep(0.2)
                return
            time.sleep(0.05)
        raise RuntimeError("dumpcap did not start capturing")

    def stop(self) -> str:
        """Stop (SIGINT: dumpcap flushes and prints its packet counts); returns its report."""
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(0.3)  # the last packets reach the ring buffer
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait()
        return self.err_path.read_text(errors="replace").strip()

    def pid(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []


def _packets(path: Path) -> Iterator[tuple[float, int, int, bytes]]:
    """(timestamp, sport, dport, udp payload) of every IPv4/UDP packet in a pcap file."""
    with open(path, "rb") as fh:
        head = fh.read(24)
        if len(head) < 24:
            return
        magic_le = struct.unpack("<I", head[:4])[0]
        if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
            magic = magic_le
        else:
            endian = ">"
            magic = struct.unpack(">I", head[:4])[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            raise ValueError(f"{path}: not a pcap file (pcapng? capture with dumpcap -P)")
        scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        offset = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_NULL: 4}.get(linktype)
        if offset is None:
            raise ValueError(f"{path}: unsupported link type {linktype}")
        rec = struct.Struct(endian + "IIII")
        while True:
            ph = fh.read(16)
            if len(ph) < 16:
                return
            sec, frac, incl, _orig = rec.unpack(ph)
            frame = fh.read(incl)
            if linktype == LINKTYPE_ETHERNET and frame[12:14] != b"\x08\x00":
                continue
            ip = frame[offset:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
            yield sec + frac * scale, sport, dport, ip[ihl + 8 :]


def _sip_summary(payload: bytes) -> tuple[str, str | int, str, str] | None:
    """(kind 'Q'|'R', method or status, Call-ID, CSeq method) or None."""
    head = payload.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    if not head or not head[0]:
        return None
    call_id = cseq = ""
    for line in head[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key in ("call-id", "i"):
            call_id = value.strip()
        elif key == "cseq":
            cseq = value.split()[-1].upper() if value.split() else ""
    if not call_id:
        return None
    first = head[0]
    if first.startswith("SIP/2.0 "):
        try:
            return "R", int(first.split()[1]), call_id, cseq
        except (IndexError, ValueError):
            return None
    return "Q", first.split(" ", 1)[0], call_id, cseq


def percentile(sorted_vals: list[float], p: float) -> float:
    """Linear interpolation between closest ranks."""
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def analyse(path: Path, uac: int, proxy: int, uas: int) -> dict[str, object]:
    calls: dict[str, dict[str, float | int]] = {}
    packets = 0
    for ts, sport, dport, payload in _packets(path):
        msg = _sip_summary(payload)
        if msg is None:
            continue
        packets += 1
        kind, what, cid, cseq = msg
        c = calls.setdefault(cid, {})
        if kind == "Q" and what == "INVITE":
            if (sport, dport) == (uac, proxy):
                c.setdefault("inv_in", ts)
            elif (sport, dport) == (proxy, uas):
                c.setdefault("inv_out", ts)
        elif kind == "R" and cseq == "INVITE" and isinstance(what, int):
            if (sport, dport) == (proxy, uac):
                if what == 100:
                    c.setdefault("t100", ts)
                elif what >= 200:
                    c.setdefault("final_out", ts)
                    c.setdefault("code", what)
            elif (sport, dport) == (uas, proxy) and what >= 200:
                c.setdefault("final_in", ts)
    series: dict[str, list[float]] = {
        k: []
        for k in (
            "blocked_403",
            "allowed_200",
            "trying_100",
            "fwd_invite",
            "fwd_200",
            "proxy_added",
        )
    }
    for c in calls.values():
        if "inv_in" not in c:
            continue
        t_in = c["inv_in"]
        code = c.get("code")
        if "final_out" in c:
            if code == 403:
                series["blocked_403"].append(c["final_out"] - t_in)
            elif code == 200:
                series["allowed_200"].append(c["final_out"] - t_in)
        if "t100" in c:
            series["trying_100"].append(c["t100"] - t_in)
        if "inv_out" in c:
            series["fwd_invite"].append(c["inv_out"] - t_in)
        if code == 200 and "final_in" in c and "final_out" in c:
            fwd_200 = c["final_out"] - c["final_in"]
            series["fwd_200"].append(fwd_200)
            if "inv_out" in c:
                series["proxy_added"].append(c["inv_out"] - t_in + fwd_200)
    out: dict[str, object] = {"sip_packets": packets, "calls": len(calls)}
    for name, vals in series.items():
        if not vals:
            continue
        ms = sorted(v * 1000.0 for v in vals)
        out[name] = {
            "n": len(ms),
            "p50_ms": round(percentile(ms, 50), 3),
            "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3),
            "max_ms": round(ms[-1], 3),
        }
    return out
