#!/usr/bin/env python3
"""Side-by-side benchmark of a Silver Lining node against moto, LocalStack and nginx.

One invocation starts each server on a free 127.0.0.1 port, waits until it answers, runs the
same workload against it with the same client, stops it through its own process group, and
writes benchmarks/RESULTS.md and benchmarks/results.json. Run it with the client venv that
benchmarks/setup_peers.sh creates:

    bash benchmarks/setup_peers.sh
    benchmarks/.peers/client/bin/python benchmarks/run.py            # full run, ~15 min
    benchmarks/.peers/client/bin/python benchmarks/run.py --quick --only moto,nginx
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import botocore
from harness import procstats
from harness.report import TARGETS, filesystem_of, machine, markdown, other_load
from harness.s3client import BenchError, JSONDict, S3Client, describe
from harness.servers import BENCH_DIR, REPO, SERVERS, Server, ServerError
from harness.workloads import NOISY_LOAD, Settings, Workload, wait_for_quiet

SERVER_TIMEOUT = 3600.0  # a server's whole workload, besides waiting for a quiet machine
TIMED_STEPS = 12  # timed phases and wrk runs per server, a bound for the waits


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        default=",".join(SERVERS),
        help=f"comma-separated servers to run (default: all of {','.join(SERVERS)})",
    )
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    parser.add_argument("--duration", type=float, help="seconds per phase (15; quick 3)")
    parser.add_argument("--list-keys", type=int, default=10_000, help="keys in the listing")
    parser.add_argument(
        "--unsigned-payload",
        action="store_true",
        help="send PUT bodies as UNSIGNED-PAYLOAD instead of signing their SHA-256",
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument(
        "--sl-args", default="", help='extra arguments for silverlining serve, e.g. "--workers 2"'
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each server and each timed phase, wait up to this long for the "
        "machine to be idle (for shared machines)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="rerun a phase disturbed by other load up to this many times (default 2)",
    )
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work")
    parser.add_argument("--keep-work", action="store_true", help="keep data dirs and logs")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite --output from the figures in --json (after editing "
        "PROFILE.md, say)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record each server with py-spy during the PUT and GET phases into DIR",
    )
    args = parser.parse_args(argv)
    args.servers = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.servers if n not in SERVERS]
    if unknown or not args.servers:
        parser.error(f"unknown server(s) {unknown}; choose from {','.join(SERVERS)}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    base = Settings()
    if args.quick:
        base = dataclasses.replace(
            base, duration=3.0, warmup=1.0, list_repeats=1, wrk_duration=3.0,
        )  # fmt: skip
    changes: dict[str, object] = {
        "list_keys": args.list_keys,
        "profile_dir": args.profile,
        "quiet_wait": args.quiet_wait,
        "retries": args.retries,
        "sign_payload": not args.unsigned_payload,
    }
    if args.duration is not None:
        changes["duration"] = args.duration
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def bench_server(server: Server, settings: Settings) -> JSONDict:
    """Start, measure and stop one server; never raises for a server's own failure."""
    doc: JSONDict = {"title": server.title, "facts": server.describe(), "endpoint": server.endpoint}
    client: S3Client | None = None
    workload: Workload | None = None
    print(f"== {server.title} on {server.endpoint}", flush=True)
    try:
        server.start()
        client = S3Client(
            server.endpoint,
            server.access_key,
            server.secret_key,
            sign_payload=settings.sign_payload,
        )
        doc["startup_s"] = round(await server.wait_ready(client), 2)
        doc["pid"] = server.pid
        with procstats.RssSampler(server.pid) as sampler:
            workload = Workload(server, client, settings)
            try:
                waits = settings.quiet_wait * (settings.retries + 1) * TIMED_STEPS
                await asyncio.wait_for(workload.run(), timeout=SERVER_TIMEOUT + waits)
            except (BenchError, aiohttp.ClientError, TimeoutError) as exc:
                doc["error"] = describe(exc)
            doc["process"] = {
                "peak_rss_mib": round(sampler.peak / (1 << 20), 1),
                "sum_vmhwm_mib": round(procstats.hwm_bytes(server.pid) / (1 << 20), 1),
                "cpu_s_total": round(procstats.cpu_seconds(server.pid), 2),
            }
    except ServerError as exc:
        doc["error"] = str(exc)
    finally:
        if client is not None:
            await client.close()
        server.stop()
    if workload is not None:
        doc["phases"] = {name: r.to_json() for name, r in workload.phases.items()}
        doc["wrk"] = workload.wrk
    if server.stop_note:
        doc["stop_note"] = server.stop_note
    if "error" in doc:
        doc["log_tail"] = server.log_tail(15)
        print(f"!! {server.name}: {doc['error']}\n{doc['log_tail']}", flush=True)
    return doc


def notes_for(servers: JSONDict) -> list[str]:
    notes = []
    for name, doc in servers.items():
        if "error" in doc:
            notes.append(f"{doc['title']}: run failed: {doc['error'].splitlines()[0]}")
        for phase, figures in doc.get("phases", {}).items():
            for sample in figures.get("error_samples", [])[:2]:
                notes.append(f"{doc['title']}, {phase}: {sample}")
        for phase, figures in doc.get("wrk", {}).items():
            if figures.get("non_2xx") or figures.get("socket_errors"):
                notes.append(
                    f"{doc['title']}, wrk {phase}: {figures.get('non_2xx')} non-2xx answers, "
                    f"{figures.get('socket_errors')} socket errors"
                )
        if "stop_note" in doc:
            notes.append(f"{doc['title']}: {doc['stop_note']}")
        rerun = [
            f"{phase} ({figures['attempts']} runs)"
            for group in ("phases", "wrk")
            for phase, figures in doc.get(group, {}).items()
            if figures.get("attempts", 1) > 1
        ]
        if rerun:
            notes.append(
                f"{doc['title']}: rerun because of other load, least disturbed run kept: "
                + ", ".join(rerun)
            )
        load = other_load(doc)
        if load is not None and load > NOISY_LOAD:
            notes.append(
                f"{doc['title']}: up to {load:.2f} cores of other load during a phase even "
                "after retries (a shared machine); those figures are not clean."
            )
        if name == "silverlining":
            notes.append(
                "Silver Lining keeps its durability contract throughout: objects on disk, "
                "fsynced before a write is acknowledged; every signature and every payload "
                "SHA-256 verified."
            )
        if name == "moto":
            notes.append("moto keeps objects in memory and checks no signature.")
        if name == "localstack":
            notes.append(
                "LocalStack keeps objects in memory (no persistence) and does not verify "
                "signatures by default; its twisted gateway is made to bind 127.0.0.1 by "
                "benchmarks/launchers/localstack_loopback.py."
            )
    return notes


def reproduce_command(argv: list[str]) -> str:
    """The command line that reproduces the figures: where the report goes is left out."""
    python = Path(sys.executable)
    try:
        python_text = str(python.relative_to(REPO))
    except ValueError:
        python_text = str(python)
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--output", "--json"):
            skip = True
        elif not arg.startswith(("--output=", "--json=", "--keep-work")):
            kept.append(arg)
    return shlex.join([python_text, "benchmarks/run.py", *kept])


def write_report(
    args: argparse.Namespace,
    argv: list[str],
    settings: Settings,
    started: float,
    servers: JSONDict,
) -> JSONDict:
    """Write RESULTS.md and results.json for the servers measured so far."""
    pending = [n for n in args.servers if n not in servers]
    doc: JSONDict = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "command": reproduce_command(argv),
        "machine": machine(),
        "filesystem": filesystem_of(args.work_dir),
        "client": {
            "python": sys.version.split()[0],
            "aiohttp": aiohttp.__version__,
            "botocore": botocore.__version__,
        },
        "settings": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(settings).items()
        },
        "servers": servers,
        "pending": pending,
    }
    doc["targets"] = [t.evaluate(servers) for t in TARGETS]
    doc["notes"] = notes_for(servers)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    args.output.write_text(markdown(doc))
    return doc


async def main_async(args: argparse.Namespace, argv: list[str]) -> int:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    settings = settings_from(args)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
    started = time.time()
    servers: JSONDict = {}
    failed = False
    try:
        for name in args.servers:
            extra = shlex.split(args.sl_args) if name == "silverlining" else None
            server = SERVERS[name](workdir, extra)
            load = await wait_for_quiet(args.quiet_wait)
            servers[name] = await bench_server(server, settings)
            servers[name]["load_before_cores"] = round(load, 2)
            failed = failed or "error" in servers[name]
            if not args.keep_work and "error" not in servers[name]:
                shutil.rmtree(server.workdir, ignore_errors=True)
            # After every server, so an interrupted run still leaves its figures.
            doc = write_report(args, argv, settings, started, servers)
    finally:
        if failed or args.keep_work:
            print(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"wrote {args.output} and {args.json}")
    for t in doc["targets"]:
        if t["met"] is not None:
            status = "met" if t["met"] else "NOT met"
            print(f"  {t['target']}: {t['ratio']} (needs {t['threshold']}) {status}")
    return 1 if failed else 0


def render_only(args: argparse.Namespace) -> int:
    doc: JSONDict = json.loads(args.json.read_text())
    doc["targets"] = [t.evaluate(doc["servers"]) for t in TARGETS]
    doc["notes"] = notes_for(doc["servers"])
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    args.output.write_text(markdown(doc))
    print(f"wrote {args.output} from {args.json}")
    return 0


def main() -> int:
    argv = sys.argv[1:]
    args = parse_args(argv)
    if args.render_only:
        return render_only(args)
    try:
        return asyncio.run(main_async(args, argv))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; every started server was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
