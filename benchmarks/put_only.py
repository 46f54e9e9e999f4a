#!/usr/bin/env python3
"""Large PUTs only, against one server, in rounds: what the 64 MiB PUT figures of
PROFILE.md were measured with (run.py's PUT phase is one 15 s round after a warm-up; this
repeats rounds so that the node's steady state shows, and leaves the machine quiet in
between for `perf record -a -g` or py-spy).

    benchmarks/.peers/client/bin/python benchmarks/put_only.py silverlining --seconds 12
    benchmarks/.peers/client/bin/python benchmarks/put_only.py localstack --unsigned-payload

Per round: MiB/s, the server's CPU-s per GiB and cores used (its process session, /proc),
and the client's CPU-s per GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

from harness import procstats
from harness.s3client import Payload, S3Client
from harness.servers import BENCH_DIR, LocalStack, Moto, Server, SilverLining

MiB = 1 << 20
SERVERS: dict[str, type[Server]] = {
    "silverlining": SilverLining, "localstack": LocalStack, "moto": Moto,
}


async def run(args: argparse.Namespace) -> None:
    work = BENCH_DIR / ".work"
    work.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.sl_args) if args.server == "silverlining" else None
    server = SERVERS[args.server](Path(tempfile.mkdtemp(prefix="put-", dir=work)), extra)
    server.start()
    client = S3Client(server.endpoint, server.access_key, server.secret_key,
                      sign_payload=not args.unsigned_payload)
    try:
        await server.wait_ready(client)
        await client.create_bucket("bench-put")
        bodies = [Payload.of(os.urandom(args.size_mib * MiB)) for _ in range(4)]
        for number in range(args.rounds):
            done = 0
            end = time.monotonic() + args.seconds

            async def worker(index: int, end: float = end) -> None:
                nonlocal done
                turn = 0
                while time.monotonic() < end:
                    body = bodies[(index + turn) % len(bodies)]
                    await client.put("bench-put", f"k{index}-{turn % 4}", body)
                    done += 1
                    turn += 1

            server_cpu = procstats.cpu_seconds(server.pid)
            client_cpu = time.process_time()
            started = time.monotonic()
            await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
            wall = time.monotonic() - started
            gib = done * args.size_mib / 1024
            used = procstats.cpu_seconds(server.pid) - server_cpu
            print(f"{args.server} round {number}: {done * args.size_mib / wall:,.0f} MiB/s, "
                  f"server {used / gib:.2f} CPU-s/GiB ({used / wall:.2f} cores), "
                  f"client {(time.process_time() - client_cpu) / gib:.2f} CPU-s/GiB",
                  flush=True)
    finally:
        await client.close()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=sorted(SERVERS))
    parser.add_argument("--seconds", type=float, default=12.0, help="per round (12)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--unsigned-payload", action="store_true")
    parser.add_argument("--sl-args", default="", help="extra arguments for silverlining serve")
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
