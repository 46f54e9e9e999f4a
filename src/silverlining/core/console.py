"""Human output: a live view while checks run, then the results table and the verdict.

Everything provider-controlled (evidence, reasons) is printed as plain :class:`rich.text.Text`,
never as markup, so a hostile answer cannot restyle or hide the output.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from silverlining.core.registry import Check
from silverlining.core.report import CheckResult, LevelSummary, Report, Status

STYLES = {
    Status.PASSED: ("PASS", "bold green"),
    Status.FAILED: ("FAIL", "bold red"),
    Status.ERROR: ("ERROR", "bold magenta"),
    Status.SKIPPED: ("SKIP", "bold yellow"),
}


def status_text(status: Status) -> Text:
    label, style = STYLES[status]
    return Text(label, style=style)


def seconds(duration_ms: int) -> str:
    return f"{duration_ms / 1000:.2f}s"


class LiveProgress:
    """A progress bar and the checks in flight, with a line printed as each check ends.

    Thread-safe: the runner calls :meth:`started` and :meth:`finished` from worker threads.
    """

    def __init__(self, console: Console, total: int) -> None:
        self._console = console
        self._total = total
        self._done = 0
        self._counts = dict.fromkeys(Status, 0)
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._live = Live(
            self, console=console, refresh_per_second=8, transient=True, redirect_stdout=False
        )

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._live.stop()

    def started(self, check: Check) -> None:
        with self._lock:
            self._running[check.id] = time.monotonic()

    def finished(self, result: CheckResult) -> None:
        with self._lock:
            self._running.pop(result.id, None)
            self._done += 1
            self._counts[result.status] += 1
        line = Text.assemble(
            status_text(result.status),
            " ",
            (result.id, "bold"),
            (f"  {seconds(result.duration_ms)}", "dim"),
        )
        if result.status != Status.PASSED and result.reason:
            line.append(f"  {result.reason[:160]}", style="dim")
        self._console.print(line, overflow="ellipsis", no_wrap=True)

    def __rich__(self) -> RenderableType:
        with self._lock:
            running = sorted(self._running.items(), key=lambda item: item[1])
            done = self._done
            counts = dict(self._counts)
        now = time.monotonic()
        header = Table.grid(padding=(0, 1))
        header.add_row(
            ProgressBar(total=self._total, completed=done, width=40),
            Text(f"{done}/{self._total}"),
            Text(f"{counts[Status.PASSED]} passed", style="green"),
            Text(f"{counts[Status.FAILED] + counts[Status.ERROR]} failed", style="red"),
            Text(f"{counts[Status.SKIPPED]} skipped", style="yellow"),
        )
        lines: list[RenderableType] = [header]
        for check_id, since in running:
            lines.append(Text(f"  running {check_id}  {now - since:.1f}s", style="cyan"))
        return Group(*lines)


def print_results(console: Console, report: Report) -> None:
    """The per-check table, the evidence of every failure, and the verdict."""
    table = Table(title="Core results", expand=False)
    id_width = max((len(r.id) for r in report.results), default=10)
    table.add_column("Status", no_wrap=True, min_width=6)
    table.add_column("Check", style="bold", no_wrap=True, min_width=id_width)
    table.add_column("Level", no_wrap=True, min_width=8)
    table.add_column("Time", justify="right", no_wrap=True, min_width=6)
    # One line per check; the full evidence of every failure follows the table.
    fixed = 6 + id_width + 8 + 6 + 16  # the other columns, padding and borders
    table.add_column(
        "Why not passed",
        no_wrap=True,
        overflow="ellipsis",
        max_width=max(12, console.width - fixed),
    )
    for result in report.results:
        why = "" if result.status == Status.PASSED else (result.reason or "")
        table.add_row(
            status_text(result.status),
            Text(result.id),
            Text(str(result.level)),
            Text(seconds(result.duration_ms)),
            Text(why),
        )
    console.print(table)
    _print_evidence(console, [r for r in report.results if r.evidence is not None])
    notes = [(r.id, n) for r in report.results for n in r.notes]
    if notes and any(n.startswith("cleanup") for _, n in notes):
        console.print(Text("\nCleanup problems:", style="bold yellow"))
        for check_id, note in notes:
            if note.startswith("cleanup"):
                console.print(Text(f"  {check_id}: {note}"))
    if report.leftovers:
        console.print(
            Text(
                f"Buckets Core could not delete: {', '.join(report.leftovers)}",
                style="bold yellow",
            )
        )
    print_verdict(console, report)


def _print_evidence(console: Console, failed: Sequence[CheckResult]) -> None:
    if not failed:
        return
    console.print(Text("\nEvidence", style="bold"))
    for result in failed:
        assert result.evidence is not None
        console.print(
            Text.assemble(
                status_text(result.status), " ", (result.id, "bold"), f"  {result.statement}"
            )
        )
        for label, value in (
            ("request ", result.evidence.request),
            ("expected", result.evidence.expected),
            ("got     ", result.evidence.got),
        ):
            console.print(Text.assemble(("    " + label + "  ", "dim"), value))


def print_verdict(console: Console, report: Report) -> None:
    verdict = report.verdict
    console.print()
    if verdict.partial:
        results = report.results
        passed = sum(1 for r in results if r.status == Status.PASSED)
        console.print(
            Text.assemble(
                ("selected ", "bold"),
                f"{passed}/{len(results)} passed  ",
                ("ALL PASSED", "bold green")
                if passed == len(results)
                else ("NOT ALL PASSED", "bold red"),
            )
        )
    else:
        for summary in verdict.levels:
            console.print(_level_line(summary))
    for reason in verdict.reasons:
        console.print(Text(f"  - {reason}", style="dim"))
    took = (report.finished_at - report.started_at).total_seconds()
    if verdict.partial:
        headline = Text.assemble(
            ("Verdict: ", "bold"), ("partial run, no level certified", "bold yellow")
        )
    elif verdict.passed:
        headline = Text.assemble(("Verdict: ", "bold"), (f"{verdict.level} PASSED", "bold green"))
    else:
        certified = f" (highest level passed: {verdict.certified})" if verdict.certified else ""
        headline = Text.assemble(
            ("Verdict: ", "bold"), (f"{verdict.level} NOT PASSED", "bold red"), certified
        )
    headline.append(f"  in {took:.1f}s against {report.endpoint}", style="dim")
    console.print(headline)


def _level_line(summary: LevelSummary) -> Text:
    parts = [f"{summary.passed}/{summary.total} passed"]
    if summary.failed:
        parts.append(f"{summary.failed} failed")
    if summary.errors:
        parts.append(f"{summary.errors} errors")
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped")
    return Text.assemble(
        (f"{summary.level:<9}", "bold"),
        f" {', '.join(parts)}  ",
        ("PASSED", "bold green") if summary.ok else ("NOT PASSED", "bold red"),
    )
