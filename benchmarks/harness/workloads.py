"""The workload run against every server, phase by phase, with the same client.

Every phase is bounded in operations and in time. A phase's figures are its successful
operations over its wall time; the server's CPU time (its whole process session, from /proc)
is read before and after each phase.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import aiohttp

from . import procstats
from .s3client import BenchError, Fingerprint, JSONDict, Payload, S3Client, describe
from .servers import PEERS, Nginx, Server

MiB = 1 << 20
BUCKET = "bench"
LIST_BUCKET = "bench-list"
MAX_ERRORS = 100  # a phase stops early past this many failed operations
NOISY_LOAD = 0.2  # cores of other activity above which figures are flagged as not clean
NGINX_SMALL_FILES = 2000
_TRANSIENT = (BenchError, aiohttp.ClientError, asyncio.TimeoutError)


@dataclass(frozen=True)
class Settings:
    duration: float = 15.0  # seconds per phase (64 MiB and 4 KiB)
    warmup: float = 3.0
    large_size: int = 64 * MiB
    large_objects: int = 16  # distinct keys; PUTs cycle through them
    large_max_ops: int = 2000  # per 64 MiB phase, besides the time limit
    large_concurrency: int = 4
    large_bodies: int = 4  # distinct random bodies the large objects cycle through
    small_size: int = 4096
    small_concurrency: int = 16
    small_max_ops: int = 500_000
    list_keys: int = 10_000
    list_page: int = 1000
    list_concurrency: int = 32
    list_repeats: int = 5  # timed listings (after one untimed); the median is reported
    wrk_duration: float = 10.0
    phase_cap: float = 900.0  # time limit of the count-bounded listing set-up
    seed: int = 20260324
    quiet_wait: float = 0.0  # before each timed phase, wait up to this for an idle machine
    retries: int = 2  # reruns of a phase disturbed by other load; the cleanest run is kept
    sign_payload: bool = True  # x-amz-content-sha256: the body's SHA-256, or UNSIGNED-PAYLOAD
    profile_dir: Path | None = None
    profile_phases: tuple[str, ...] = ("large_put", "large_get", "small_put", "small_get")


@dataclass
class PhaseResult:
    name: str
    ops: int = 0
    seconds: float = 0.0
    nbytes: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    client_cpu_seconds: float = 0.0
    other_cpu_seconds: float = 0.0
    extra: JSONDict = field(default_factory=dict)

    def charge(self, split: procstats.CpuSplit) -> None:
        self.cpu_seconds = split.server
        self.client_cpu_seconds = split.client
        self.other_cpu_seconds = split.other

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def other_load(self) -> float:
        """Cores of CPU that neither the server nor the client used during the phase."""
        return self.other_cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / MiB / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
        return ordered[index] * 1000

    def to_json(self) -> JSONDict:
        data: JSONDict = {
            "ops": self.ops,
            "seconds": round(self.seconds, 4),
            "ops_per_s": round(self.ops_per_s, 1),
            "errors": self.errors,
            "server_cpu_s": round(self.cpu_seconds, 3),
            "server_cpu_ms_per_op": (
                round(self.cpu_seconds * 1000 / self.ops, 4) if self.ops else None
            ),
            "client_cpu_s": round(self.client_cpu_seconds, 3),
            "other_load_cores": round(self.other_load, 3),
        }
        if self.nbytes:
            data["bytes"] = self.nbytes
            data["mib_per_s"] = round(self.mib_per_s, 1)
            data["server_cpu_s_per_gib"] = round(self.cpu_seconds / (self.nbytes / (1 << 30)), 3)
        if self.latencies:
            p50, p99 = self.percentile_ms(0.50), self.percentile_ms(0.99)
            data["p50_ms"] = round(p50, 3) if p50 is not None else None
            data["p99_ms"] = round(p99, 3) if p99 is not None else None
        if self.error_samples:
            data["error_samples"] = self.error_samples
        data.update(self.extra)
        return data


Op = Callable[[int], Awaitable[int]]
T = TypeVar("T")


async def wait_for_quiet(limit: float) -> float:
    """Wait, at most ``limit`` seconds, until the machine's busy CPU is under NOISY_LOAD
    cores (measured over 2 s); return the last load seen."""
    deadline = time.monotonic() + limit
    while True:
        before = procstats.machine_busy_seconds()
        await asyncio.sleep(2.0)
        load = (procstats.machine_busy_seconds() - before) / 2.0
        if load < NOISY_LOAD or time.monotonic() >= deadline:
            return load
        print(f"   machine busy ({load:.2f} cores); waiting for it to quieten", flush=True)


async def run_phase(
    name: str,
    server: Server,
    op: Op,
    *,
    workers: int,
    max_ops: int,
    seconds: float,
) -> PhaseResult:
    """Run ``op(i)`` for i = 0, 1, ... on ``workers`` concurrent tasks until ``max_ops`` have
    been started or ``seconds`` have passed; ``op`` returns the payload bytes it moved."""
    result = PhaseResult(name)
    counter = itertools.count()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at and result.errors < MAX_ERRORS:
            i = next(counter)
            if i >= max_ops:
                return
            started = time.perf_counter()
            try:
                moved = await op(i)
            except _TRANSIENT as exc:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(describe(exc))
                continue
            result.latencies.append(time.perf_counter() - started)
            result.ops += 1
            result.nbytes += moved

    meter = procstats.CpuMeter(server.pid)
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    result.seconds = time.perf_counter() - began
    result.charge(meter.split())
    return result


class Profiler:
    """py-spy attached to a server for the length of one phase, writing the raw collapsed
    stacks to ``directory/<server>-<phase>.txt`` (harness.pyspy_report turns them into a
    flame graph and a top listing).

    ``--gil`` samples only the thread holding the GIL: on this machine py-spy's idle
    detection does not work (idle thread-pool workers and the event loop's epoll wait show up
    as busy), and the GIL holder is what caps a single Python process anyway. Work done
    without the GIL (hashing big buffers, file syscalls) is not in it; the phase's CPU
    seconds are."""

    def __init__(self, directory: Path, server: Server, phase: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / f"{server.name}-{phase}.txt"
        cmd = [
            str(PEERS / "client" / "bin" / "py-spy"), "record", "--pid", str(server.pid),
            "--subprocesses", "--gil", "--rate", "100", "--format", "raw", "--output", str(out),
            "--duration", "600",
        ]  # fmt: skip
        with (directory / f"{server.name}-{phase}.log").open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Workload:
    """The whole benchmark against one server."""

    def __init__(self, server: Server, client: S3Client, settings: Settings) -> None:
        self.server = server
        self.client = client
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.phases: dict[str, PhaseResult] = {}
        self.wrk: dict[str, JSONDict] = {}

    # --- helpers ---------------------------------------------------------------------------
    async def _cleanest(
        self, label: str, attempt: Callable[[], Awaitable[T]], load: Callable[[T], float]
    ) -> tuple[T, int]:
        """Run ``attempt`` and, while other load on the machine disturbed it, run it again
        (``retries`` times at most). Returns the least disturbed result and the attempts made."""
        s = self.settings
        best: T | None = None
        best_load = float("inf")
        attempts = 0
        while attempts <= s.retries:
            if s.quiet_wait:
                await wait_for_quiet(s.quiet_wait)
            result = await attempt()
            attempts += 1
            if load(result) < best_load:
                best, best_load = result, load(result)
            if best_load <= NOISY_LOAD:
                break
            if attempts <= s.retries:
                _log(self.server, f"{label}: {load(result):.2f} cores of other load; again")
        assert best is not None
        return best, attempts

    async def _phase(
        self, name: str, op: Op, *, workers: int, max_ops: int, seconds: float, retry: bool = True
    ) -> PhaseResult:
        s = self.settings

        async def attempt() -> PhaseResult:
            profiler = None
            if s.profile_dir is not None and name in s.profile_phases:
                profiler = Profiler(s.profile_dir, self.server, name)
                await asyncio.sleep(1.0)  # let py-spy attach before the phase starts
            try:
                return await run_phase(
                    name, self.server, op, workers=workers, max_ops=max_ops, seconds=seconds
                )
            finally:
                if profiler is not None:
                    await asyncio.to_thread(profiler.stop)

        if retry:
            result, attempts = await self._cleanest(name, attempt, lambda r: r.other_load)
            result.extra["attempts"] = attempts
        else:
            if s.quiet_wait:
                await wait_for_quiet(s.quiet_wait)
            result = await attempt()
        self.phases[name] = result
        _log(self.server, _summary(result))
        return result

    def _random_payload(self, size: int) -> Payload:
        return Payload.of(self.rng.randbytes(size))

    # --- the run --------------------------------------------------------------------------
    async def run(self) -> None:
        if self.server.speaks_s3:
            await self.client.create_bucket(BUCKET)
            await self.warm_up()
        await self.large_objects()
        await self.small_objects()
        if self.server.speaks_s3:
            await self.listing()

    async def warm_up(self) -> None:
        """PUT and GET a few small objects so lazy imports and caches are not timed."""
        bodies: dict[int, Payload] = {}

        async def op(i: int) -> int:
            key = f"warmup/{i % 256}"
            if i % 2 == 0 or (i % 256) not in bodies:
                payload = self._random_payload(self.settings.small_size)
                await self.client.put(BUCKET, key, payload)
                bodies[i % 256] = payload
                return 0
            return await self.client.get(BUCKET, key, bodies[i % 256].fingerprint)

        await run_phase(
            "warmup", self.server, op, workers=self.settings.small_concurrency,
            max_ops=100_000, seconds=self.settings.warmup,
        )  # fmt: skip

    async def large_objects(self) -> None:
        """64 MiB PUTs then GETs, each for ``duration`` seconds. PUT i writes key
        i mod ``large_objects`` (so later rounds overwrite) with body i mod ``large_bodies``;
        as the first divides by the second, a key always holds the same body."""
        s = self.settings
        bodies = [self._random_payload(s.large_size) for _ in range(s.large_bodies)]
        keys = [f"large/{i:04d}" for i in range(s.large_objects)]
        stored: set[int] = set()

        def body_of(index: int) -> Payload:
            return bodies[index % len(bodies)]

        if isinstance(self.server, Nginx):
            for index, key in enumerate(keys):
                self.server.publish(BUCKET, key, body_of(index).body)
                stored.add(index)
        else:

            async def put(i: int) -> int:
                index = i % len(keys)
                await self.client.put(BUCKET, keys[index], body_of(index))
                stored.add(index)
                return s.large_size

            await self._phase(
                "large_put", put, workers=s.large_concurrency, max_ops=s.large_max_ops,
                seconds=s.duration,
            )  # fmt: skip
        readable = sorted(stored)
        if not readable:
            raise BenchError("no 64 MiB object could be stored")

        async def get(i: int) -> int:
            index = readable[i % len(readable)]
            return await self.client.get(BUCKET, keys[index], body_of(index).fingerprint)

        await self._phase(
            "large_get", get, workers=s.large_concurrency, max_ops=s.large_max_ops,
            seconds=s.duration,
        )  # fmt: skip
        await self.run_wrk("large_get", keys[readable[0]], s.large_concurrency)

    async def small_objects(self) -> None:
        s = self.settings
        stored: list[tuple[str, Fingerprint]] = []

        if isinstance(self.server, Nginx):
            for i in range(NGINX_SMALL_FILES):
                payload = self._random_payload(s.small_size)
                key = f"small/{i:07d}"
                self.server.publish(BUCKET, key, payload.body)
                stored.append((key, payload.fingerprint))
        else:
            sequence = itertools.count()  # not the op index: a rerun phase must not reuse keys

            async def put(_: int) -> int:
                key = f"small/{next(sequence):07d}"
                payload = self._random_payload(s.small_size)
                await self.client.put(BUCKET, key, payload)
                stored.append((key, payload.fingerprint))
                return 0

            await self._phase(
                "small_put", put, workers=s.small_concurrency, max_ops=s.small_max_ops,
                seconds=s.duration,
            )  # fmt: skip
        if not stored:
            raise BenchError("no 4 KiB object could be stored")

        async def get(_: int) -> int:
            key, fingerprint = stored[self.rng.randrange(len(stored))]
            await self.client.get(BUCKET, key, fingerprint)
            return 0

        await self._phase(
            "small_get", get, workers=s.small_concurrency, max_ops=s.small_max_ops,
            seconds=s.duration,
        )  # fmt: skip
        await self.run_wrk("small_get", stored[0][0], s.small_concurrency)
        if not self.server.speaks_s3:
            return

        async def head(_: int) -> int:
            key, _fingerprint = stored[self.rng.randrange(len(stored))]
            await self.client.head(BUCKET, key, s.small_size)
            return 0

        await self._phase(
            "small_head", head, workers=s.small_concurrency, max_ops=s.small_max_ops,
            seconds=s.duration,
        )  # fmt: skip

        deleted: list[str] = []

        async def delete(i: int) -> int:
            await self.client.delete(BUCKET, stored[i][0])
            deleted.append(stored[i][0])
            return 0

        # Not rerun when disturbed: a rerun would find its keys already deleted.
        result = await self._phase(
            "small_delete", delete, workers=s.small_concurrency, max_ops=len(stored),
            seconds=s.duration, retry=False,
        )  # fmt: skip
        # Outside the timing: a deleted key must be gone.
        for key in deleted[:20]:
            status = await self.client.head(BUCKET, key, None)
            if status != 404:
                result.errors += 1
                result.error_samples.append(f"HEAD after DELETE {key}: {status}, expected 404")

    async def listing(self) -> None:
        s = self.settings
        await self.client.create_bucket(LIST_BUCKET)
        payload = Payload.of(b"listing benchmark object")
        keys = [f"key-{i:06d}" for i in range(s.list_keys)]
        created: set[str] = set()

        async def put(i: int) -> int:
            await self.client.put(LIST_BUCKET, keys[i], payload)
            created.add(keys[i])
            return 0

        populate = await run_phase(
            "list_populate", self.server, put, workers=s.list_concurrency,
            max_ops=len(keys), seconds=s.phase_cap,
        )  # fmt: skip
        _log(self.server, f"list_populate: {populate.ops} keys in {populate.seconds:.1f}s")
        expected = sorted(created)
        # One untimed listing first: the figure is the steady state, not the first read of
        # freshly written metadata (for every server alike).
        await self.client.list_all(LIST_BUCKET, s.list_page)

        async def attempt() -> tuple[PhaseResult, list[float]]:
            result = PhaseResult("list")
            times: list[float] = []
            meter = procstats.CpuMeter(self.server.pid)
            for _ in range(s.list_repeats):
                started = time.perf_counter()
                try:
                    listed = await self.client.list_all(LIST_BUCKET, s.list_page)
                except _TRANSIENT as exc:
                    result.errors += 1
                    result.error_samples.append(describe(exc))
                    continue
                times.append(time.perf_counter() - started)
                if listed != expected:
                    result.errors += 1
                    result.error_samples.append(
                        f"listing returned {len(listed)} keys, expected {len(expected)} in order"
                    )
            result.ops = len(times)
            result.seconds = sum(times)
            result.charge(meter.split())
            return result, times

        (result, times), attempts = await self._cleanest(
            "list", attempt, lambda pair: pair[0].other_load
        )
        result.extra = {
            "keys": len(expected),
            "keys_wanted": s.list_keys,
            "page_size": s.list_page,
            "median_s": round(statistics.median(times), 4) if times else None,
            "min_s": round(min(times), 4) if times else None,
            "all_s": [round(t, 4) for t in times],
            "populate_ops_per_s": round(populate.ops_per_s, 1),
            "populate_errors": populate.errors,
            "attempts": attempts,
        }
        if populate.errors or len(expected) != s.list_keys:
            result.errors += populate.errors or 1
            result.error_samples.extend(populate.error_samples[:3])
        self.phases["list"] = result
        _log(self.server, f"list: median {result.extra['median_s']}s over {len(times)} runs")

    # --- wrk, a reference without the Python client in the way ------------------------------
    async def run_wrk(self, name: str, key: str, connections: int) -> None:
        path = f"/{BUCKET}/{key}"
        url = (
            self.client.presigned_get(path)
            if self.server.speaks_s3
            else f"{self.server.endpoint}{path}"
        )
        seconds = self.settings.wrk_duration
        cmd = [
            "wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:g}s",
            "--timeout", "30s", url,
        ]  # fmt: skip

        async def attempt() -> JSONDict:
            meter = procstats.CpuMeter(self.server.pid)
            began = time.perf_counter()
            try:
                done = await asyncio.to_thread(
                    subprocess.run, cmd, capture_output=True, text=True,
                    timeout=seconds + 60, check=False,
                )  # fmt: skip
            except (OSError, subprocess.TimeoutExpired) as exc:
                return {"error": describe(exc), "other_load_cores": 0.0}
            split = meter.split()
            figures = parse_wrk(done.stdout + done.stderr)
            figures["server_cpu_s"] = round(split.server, 3)
            figures["other_load_cores"] = round(split.other / (time.perf_counter() - began), 3)
            return figures

        figures, attempts = await self._cleanest(
            f"wrk {name}", attempt, lambda f: float(f["other_load_cores"])
        )
        figures["attempts"] = attempts
        self.wrk[name] = figures
        _log(self.server, f"wrk {name}: {figures}")


_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def parse_wrk(text: str) -> JSONDict:
    """Requests/s, transfer rate and error counts from wrk's report."""
    data: JSONDict = {}
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        data["requests_per_s"] = float(m.group(1))
    if m := re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", text):
        data["mib_per_s"] = round(float(m.group(1)) * _UNITS[m.group(2)] / MiB, 1)
    if m := re.search(r"(\d+) requests in ([\d.]+)", text):
        data["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    data["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:\s+connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    data["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    if "requests_per_s" not in data:
        data["error"] = text.strip()[-300:]
    return data


def _summary(result: PhaseResult) -> str:
    text = f"{result.name}: {result.ops} ops in {result.seconds:.2f}s = {result.ops_per_s:,.0f}/s"
    if result.nbytes:
        text += f", {result.mib_per_s:,.0f} MiB/s"
    p50, p99 = result.percentile_ms(0.5), result.percentile_ms(0.99)
    if p50 is not None and p99 is not None:
        text += f", p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    if result.errors:
        text += f", {result.errors} errors ({result.error_samples[:1]})"
    return text


def _log(server: Server, message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {server.name}: {message}", flush=True)
