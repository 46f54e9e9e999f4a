"""CPU time and resident memory of a server and every process it started, from /proc.

A server is started as the leader of its own session, so "its processes" are exactly the
processes whose session id is the leader's pid (workers, gateways, nginx workers).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may hold spaces:
    # [0]=state [1]=ppid [2]=pgrp [3]=session ... [11]=utime [12]=stime [13]=cutime
    # [14]=cstime ... [21]=rss (pages).
    return text[text.rfind(")") + 2 :].split()


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def cpu_seconds(sid: int) -> float:
    """User + system CPU of every live process of the session, plus the children the
    leader has already reaped."""
    ticks = 0
    for pid in session_pids(sid):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])
        if pid == sid:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / _TICKS


def rss_bytes(sid: int) -> int:
    total = 0
    for pid in session_pids(sid):
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[21]) * _PAGE
    return total


def hwm_bytes(sid: int) -> int:
    """Sum over the session's live processes of each one's peak resident set (VmHWM)."""
    total = 0
    for pid in session_pids(sid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


class RssSampler:
    """Samples the session's total RSS in a background thread; ``peak`` is the maximum seen."""

    def __init__(self, sid: int, interval: float = 0.1) -> None:
        self._sid = sid
        self._interval = interval
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self._sid))
            self._stop.wait(self._interval)


def machine_busy_seconds() -> float:
    """CPU time every core of the machine has spent busy (not idle, not waiting on I/O)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _own_cpu_seconds() -> float:
    """This process (all its threads) plus its waited-for children (wrk, py-spy)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@dataclass
class CpuSplit:
    """Where the machine's CPU went during a phase."""

    server: float
    client: float
    other: float  # everything else on the machine: a noise check for shared machines


class CpuMeter:
    """Snapshot at construction; ``split()`` gives the CPU used since, by whom."""

    def __init__(self, sid: int) -> None:
        self._sid = sid
        self._server = cpu_seconds(sid)
        self._client = _own_cpu_seconds()
        self._busy = machine_busy_seconds()

    def split(self) -> CpuSplit:
        server = cpu_seconds(self._sid) - self._server
        client = _own_cpu_seconds() - self._client
        busy = machine_busy_seconds() - self._busy
        return CpuSplit(server, client, max(0.0, busy - server - client))
