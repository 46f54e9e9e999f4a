"""The machine description, the targets of issue 3, and RESULTS.md / results.json."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .s3client import JSONDict
from .servers import BENCH_DIR
from .workloads import NOISY_LOAD

PROFILE_NOTES = BENCH_DIR / "PROFILE.md"
ORDER = ("silverlining", "localstack", "moto", "nginx")


@dataclass(frozen=True)
class Target:
    """Silver Lining's figure divided by a peer's must reach ``threshold`` (or, for a time,
    stay at or under it)."""

    label: str
    phase: str
    metric: str
    peer: str
    threshold: float
    lower_is_better: bool = False

    def evaluate(self, servers: JSONDict) -> JSONDict:
        ours = _metric(servers, "silverlining", self.phase, self.metric)
        theirs = _metric(servers, self.peer, self.phase, self.metric)
        ratio = ours / theirs if ours is not None and theirs else None
        met = None
        if ratio is not None:
            met = ratio <= self.threshold if self.lower_is_better else ratio >= self.threshold
        loads = [
            _metric(servers, name, self.phase, "other_load_cores")
            for name in ("silverlining", self.peer)
        ]
        return {
            "target": self.label,
            "silverlining": ours,
            self.peer: theirs,
            "ratio": round(ratio, 3) if ratio is not None else None,
            "threshold": ("<= " if self.lower_is_better else ">= ") + f"{self.threshold:.3g}",
            "met": met,
            # Both figures measured with under NOISY_LOAD cores of other activity.
            "clean": all(load is not None and load <= NOISY_LOAD for load in loads),
        }


TARGETS = (
    Target("4 KiB GET ops/s vs LocalStack", "small_get", "ops_per_s", "localstack", 4.0),
    Target("4 KiB GET ops/s vs moto", "small_get", "ops_per_s", "moto", 6.0),
    Target("4 KiB HEAD ops/s vs LocalStack", "small_head", "ops_per_s", "localstack", 4.0),
    Target("4 KiB HEAD ops/s vs moto", "small_head", "ops_per_s", "moto", 6.0),
    Target("4 KiB PUT ops/s vs LocalStack", "small_put", "ops_per_s", "localstack", 2.0),
    Target("64 MiB GET MiB/s vs nginx", "large_get", "mib_per_s", "nginx", 0.8),
    Target("64 MiB PUT MiB/s vs LocalStack", "large_put", "mib_per_s", "localstack", 1.5),
    Target("10,000-key listing time vs LocalStack", "list", "median_s", "localstack", 1 / 3, True),
)


def _metric(servers: JSONDict, server: str, phase: str, metric: str) -> float | None:
    value = servers.get(server, {}).get("phases", {}).get(phase, {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def other_load(server: JSONDict) -> float | None:
    """The most CPU anything besides this server and the client used during its phases."""
    loads = [
        figures["other_load_cores"]
        for group in ("phases", "wrk")
        for figures in server.get(group, {}).values()
        if isinstance(figures.get("other_load_cores"), int | float)
    ]
    return max(loads) if loads else None


def machine() -> JSONDict:
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    os_name = platform.platform()
    release = Path("/etc/os-release")
    if release.exists():
        for line in release.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "os": os_name,
        "kernel": platform.release(),
    }


def filesystem_of(path: Path) -> str:
    """Device, type and mount options of the file system holding ``path``."""
    done = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "--target", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    parts = done.stdout.split()
    return f"{parts[1]} on {parts[0]} ({parts[2]})" if len(parts) == 3 else "unknown"


# --- Markdown ---------------------------------------------------------------------------------
def _num(value: object, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:,.{digits}f}"


def _cell(phase: JSONDict | None, metric: str, digits: int = 0) -> str:
    if not phase:
        return "—"
    text = _num(phase.get(metric), digits)
    if phase.get("errors"):
        text += f" ⚠ {phase['errors']} errors"
    return text


def _latency(phase: JSONDict | None) -> str:
    if not phase or "p50_ms" not in phase:
        return "—"
    return f"{_num(phase['p50_ms'], 2)} / {_num(phase['p99_ms'], 2)}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(doc: JSONDict) -> str:
    servers: JSONDict = doc["servers"]
    names = [n for n in ORDER if n in servers]
    titles = [servers[n]["title"] for n in names]

    def phase(name: str, ph: str) -> JSONDict | None:
        found: JSONDict | None = servers[name].get("phases", {}).get(ph)
        return found

    def row(label: str, ph: str, metric: str, digits: int = 0) -> list[str]:
        return [label, *(_cell(phase(n, ph), metric, digits) for n in names)]

    def wrk_row(label: str, ph: str, metric: str) -> list[str]:
        cells = []
        for n in names:
            w = servers[n].get("wrk", {}).get(ph)
            text = _num(w.get(metric)) if w else "—"
            if w and (w.get("non_2xx") or w.get("socket_errors") or w.get("error")):
                text += " ⚠"
            cells.append(text)
        return [label, *cells]

    s = doc["settings"]
    m = doc["machine"]
    out = [
        "# Silver Lining node benchmark",
        "",
        "Generated by `benchmarks/run.py` — do not edit by hand; rerun it (the profile notes in "
        "the last section come from `benchmarks/PROFILE.md`).",
        "",
        f"Run started {doc['started']}, took {doc['elapsed_s']:.0f} s.",
        "",
    ]
    if doc.get("pending"):
        out += [
            f"**Incomplete run**: {', '.join(doc['pending'])} not measured yet (the run was "
            "interrupted or is still going).",
            "",
        ]
    out += [
        "## How to rerun",
        "",
        "```sh",
        "bash benchmarks/setup_peers.sh          # once: peer venvs, nginx, wrk, the client venv",
        doc["command"],
        "```",
        "",
        "## Machine and software",
        "",
        f"- {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, {m['os']}, "
        f"kernel {m['kernel']}",
        f"- work directory (Silver Lining's data dir) on {doc['filesystem']}",
        f"- client: Python {doc['client']['python']}, aiohttp {doc['client']['aiohttp']}, "
        f"botocore {doc['client']['botocore']}; one process, one asyncio loop",
    ]
    for n in names:
        facts = servers[n].get("facts", {})
        extra = ", ".join(f"{k} {v}" for k, v in facts.items() if k not in ("version", "python"))
        python = f", Python {facts['python']}" if facts.get("python", "-") != "-" else ""
        out.append(
            f"- {servers[n]['title']}: {facts.get('version', '?')}{python}"
            + (f"; {extra}" if extra else "")
        )
    out += [
        "",
        "## Workload",
        "",
        f"- 64 MiB objects: a PUT phase then a GET phase of {s['duration']:g} s each, "
        f"concurrency {s['large_concurrency']}, cycling over {s['large_objects']} keys (PUTs "
        "after the first round overwrite); MiB/s over the phase's wall time, including the "
        "requests in flight when the time is up.",
        f"- 4 KiB objects: PUT, GET, HEAD, DELETE phases of {s['duration']:g} s each (DELETE "
        f"stops early when every PUT key is gone), concurrency {s['small_concurrency']}; "
        "GET/HEAD pick random keys among those PUT.",
        f"- Listing: {s['list_keys']:,} keys created beforehand (concurrency "
        f"{s['list_concurrency']}, untimed), then ListObjectsV2 in pages of {s['list_page']} "
        f"until the end: one untimed listing, then {s['list_repeats']} timed; the median "
        "wall time.",
        "- One client for all servers: asyncio + aiohttp, keep-alive, path-style URLs, every "
        "request signed with botocore's SigV4 signer (`S3SigV4Auth`). "
        + (
            "Payload mode: the body's SHA-256 in `x-amz-content-sha256`, signed — what boto3 "
            "and the aws CLI send to an `http://` endpoint; the digest of each distinct 64 MiB "
            "body is computed once, outside the timing."
            if s.get("sign_payload", True)
            else "Payload mode: `UNSIGNED-PAYLOAD` (what boto3 sends over TLS; not its choice "
            "for an `http://` endpoint), so no server has a body hash to verify."
        )
        + " nginx receives the same signed requests and ignores the headers.",
        "- Every GET body is checked (length and CRC-32) against what was PUT; every HEAD's "
        "Content-Length; a sample of deleted keys must answer 404; each listing must return "
        "exactly the keys created, in order.",
        "- Latency is client-observed, from signing to the last body byte checked.",
        "- Server CPU is user+system time of the server's whole process session from "
        "`/proc/<pid>/stat`, before and after each phase; peak RSS is sampled every 100 ms "
        "over the server's processes. \"Other load\" is the machine's busy CPU (`/proc/stat`) "
        "minus the server's and the client's: what else ran during a phase.",
        f"- wrk rows: `wrk -t 2 -c <concurrency> -d {s['wrk_duration']:g}s` on one object "
        "(a presigned URL for the S3 servers); no body check, a reference only.",
        "",
        "## Figures",
        "",
    ]
    out += _table(
        ["figure", *titles],
        [
            row("64 MiB PUT, MiB/s", "large_put", "mib_per_s"),
            row("64 MiB GET, MiB/s", "large_get", "mib_per_s"),
            row("4 KiB PUT, ops/s", "small_put", "ops_per_s"),
            row("4 KiB GET, ops/s", "small_get", "ops_per_s"),
            row("4 KiB HEAD, ops/s", "small_head", "ops_per_s"),
            row("4 KiB DELETE, ops/s", "small_delete", "ops_per_s"),
            row("list 10,000 keys, s (median)", "list", "median_s", 3),
        ],
    )
    out += ["", "Latency, p50 / p99 in ms:", ""]
    out += _table(
        ["operation", *titles],
        [
            [label, *(_latency(phase(n, ph)) for n in names)]
            for label, ph in (
                ("64 MiB PUT", "large_put"),
                ("64 MiB GET", "large_get"),
                ("4 KiB PUT", "small_put"),
                ("4 KiB GET", "small_get"),
                ("4 KiB HEAD", "small_head"),
                ("4 KiB DELETE", "small_delete"),
            )
        ],
    )
    out += ["", "Server cost:", ""]
    out += _table(
        ["figure", *titles],
        [
            row("CPU ms per 4 KiB PUT", "small_put", "server_cpu_ms_per_op", 3),
            row("CPU ms per 4 KiB GET", "small_get", "server_cpu_ms_per_op", 3),
            row("CPU ms per 4 KiB HEAD", "small_head", "server_cpu_ms_per_op", 3),
            row("CPU ms per 4 KiB DELETE", "small_delete", "server_cpu_ms_per_op", 3),
            row("CPU s per GiB PUT", "large_put", "server_cpu_s_per_gib", 2),
            row("CPU s per GiB GET", "large_get", "server_cpu_s_per_gib", 2),
            [
                "peak RSS, MiB",
                *(_num(servers[n].get("process", {}).get("peak_rss_mib")) for n in names),
            ],
            [
                "other load on the machine, cores (max of phases)",
                *(_num(other_load(servers[n]), 2) for n in names),
            ],
        ],
    )
    out += ["", "Reference without the Python client (wrk, no body check):", ""]
    out += _table(
        ["figure", *titles],
        [
            wrk_row("64 MiB GET, MiB/s", "large_get", "mib_per_s"),
            wrk_row("4 KiB GET, requests/s", "small_get", "requests_per_s"),
        ],
    )
    out += [
        "",
        "## Targets (issue 3)",
        "",
        "Separate clean runs on this machine differ by up to ~20% (a peer's 4 KiB figures "
        "most), so a ratio within that margin of its threshold is not a firm result: rerun.",
        "",
    ]
    target_rows = []
    for t in doc["targets"]:
        met = {True: "**met**", False: "**not met**", None: "n/a (not measured)"}[t["met"]]
        if t["met"] is not None and not t.get("clean", True):
            met += " (disturbed: other load during a phase, see Notes)"
        ratio = _num(t["ratio"], 2) if t["ratio"] is not None else "—"
        target_rows.append([t["target"], ratio, t["threshold"], met])
    out += _table(["target", "Silver Lining ÷ peer", "needed", "status"], target_rows)
    notes = doc.get("notes", [])
    if notes:
        out += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    out += ["", "## Where the time goes", ""]
    if PROFILE_NOTES.exists():
        out.append(PROFILE_NOTES.read_text().strip())
    else:
        out.append(
            "Not profiled yet: run `bash benchmarks/profile.sh`, which records the node under "
            "`py-spy` during the 4 KiB PUT and GET phases (flame graphs and a top listing in "
            "`benchmarks/.work/profile/`), and summarise it in `benchmarks/PROFILE.md`."
        )
    return "\n".join(out) + "\n"
