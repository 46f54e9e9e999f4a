"""The report of a run: results, verdict, and the canonical JSON that signatures cover.

The JSON document (format ``silverlining-core-report/1``)::

    {
      "format": "silverlining-core-report/1",
      "core_version": "...", "silverlining_version": "...",
      "level": "s3-full", "endpoint": "...", "region": "...", "addressing": "path",
      "run_id": "...", "started_at": "...Z", "finished_at": "...Z",
      "selection": null | ["s3.auth.*", ...],
      "checks": [{"id", "level", "statement", "status", "duration_ms", "reason",
                  "evidence": null | {"request", "expected", "got"}, "notes": [...]}],
      "verdict": {"level", "passed", "certified", "partial", "levels": {...}, "reasons": [...]},
      "results_sha256": "<hex SHA-256 of the canonical JSON of checks>",
      "signer": {...}, "signature": "..."          # only in signed reports, see signing.py
    }

Every value is a string, an integer, a boolean, null, a list or an object — no floats — so the
canonical form (sorted keys, no insignificant whitespace, UTF-8) is the same in any language.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from silverlining.canonical import canonical_json
from silverlining.core.evidence import Evidence
from silverlining.core.registry import LEVELS, Level

REPORT_FORMAT = "silverlining-core-report/1"


class Status(enum.StrEnum):
    """A check's outcome. Only ``passed`` counts towards a level."""

    PASSED = "passed"
    FAILED = "failed"  # the provider misbehaved; evidence says how
    ERROR = "error"  # the check itself broke (a Core bug or an unparseable answer)
    SKIPPED = "skipped"  # not run, e.g. no alternate account; proves nothing


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check."""

    id: str
    level: Level
    statement: str
    status: Status
    duration_ms: int
    reason: str | None = None
    evidence: Evidence | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "level": str(self.level),
            "statement": self.statement,
            "status": str(self.status),
            "duration_ms": self.duration_ms,
            "reason": self.reason,
            "evidence": self.evidence.to_dict() if self.evidence else None,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        evidence = data.get("evidence")
        return cls(
            id=str(data["id"]),
            level=Level(data["level"]),
            statement=str(data["statement"]),
            status=Status(data["status"]),
            duration_ms=int(data["duration_ms"]),
            reason=data.get("reason"),
            evidence=Evidence.from_dict(evidence) if evidence else None,
            notes=tuple(str(n) for n in data.get("notes", [])),
        )


@dataclass(frozen=True)
class LevelSummary:
    level: Level
    total: int
    passed: int
    failed: int
    errors: int
    skipped: int

    @property
    def ok(self) -> bool:
        """A level is passed only when it has checks and every one of them passed."""
        return self.total > 0 and self.passed == self.total

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.ok,
            "checks": self.total,
            "checks_passed": self.passed,
            "checks_failed": self.failed,
            "checks_errored": self.errors,
            "checks_skipped": self.skipped,
        }


@dataclass(frozen=True)
class Verdict:
    """Whether the requested level passed, and the highest level that did."""

    level: Level
    passed: bool
    certified: Level | None
    partial: bool
    levels: tuple[LevelSummary, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": str(self.level),
            "passed": self.passed,
            "certified": str(self.certified) if self.certified else None,
            "partial": self.partial,
            "levels": {str(s.level): s.to_dict() for s in self.levels},
            "reasons": list(self.reasons),
        }


def summarize(level: Level, results: Sequence[CheckResult]) -> LevelSummary:
    """Counts over the results a level requires (its own checks and those of lower levels)."""
    mine = [r for r in results if r.level in level.includes]
    count = {s: sum(1 for r in mine if r.status == s) for s in Status}
    return LevelSummary(
        level,
        len(mine),
        count[Status.PASSED],
        count[Status.FAILED],
        count[Status.ERROR],
        count[Status.SKIPPED],
    )


def compute_verdict(
    level: Level, results: Sequence[CheckResult], *, partial: bool = False
) -> Verdict:
    """The verdict a set of results supports.

    A level passes only when every one of its checks ran and passed: a skipped check proves
    nothing, so a level with a skip is not passed. A partial run (``--only``) certifies nothing.
    """
    summaries = tuple(summarize(lv, results) for lv in level.includes)
    certified: Level | None = None
    if not partial:
        for summary in summaries:
            if not summary.ok:
                break
            certified = summary.level
    passed = certified == level
    reasons: list[str] = []
    if partial:
        reasons.append("partial run (--only): a level is certified only by running all its checks")
    failed = [r.id for r in results if r.status in (Status.FAILED, Status.ERROR)]
    if failed:
        reasons.append(f"{len(failed)} check(s) did not pass: {', '.join(failed)}")
    skipped = [r for r in results if r.status == Status.SKIPPED]
    if skipped:
        why = sorted({r.reason or "skipped" for r in skipped})
        reasons.append(
            f"{len(skipped)} check(s) skipped ({'; '.join(why)}); "
            "a skipped check is not a passed one, so its level cannot be claimed"
        )
    return Verdict(level, passed, certified, partial, summaries, tuple(reasons))






def results_hash(checks: list[Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a report's ``checks`` list."""
    return hashlib.sha256(canonical_json(checks)).hexdigest()


def iso(moment: dt.datetime) -> str:
    """UTC ISO 8601 with a ``Z``, to the millisecond."""
    utc = moment.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Report:
    """Everything a run established; :meth:`to_dict` is the JSON document."""

    core_version: str
    silverlining_version: str
    level: Level
    endpoint: str
    region: str
    addressing: str
    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    results: tuple[CheckResult, ...]
    selection: tuple[str, ...] | None = None
    leftovers: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> Verdict:
        return compute_verdict(self.level, self.results, partial=self.selection is not None)

    def to_dict(self) -> dict[str, Any]:
        checks = [r.to_dict() for r in self.results]
        return {
            "format": REPORT_FORMAT,
            "core_version": self.core_version,
            "silverlining_version": self.silverlining_version,
            "level": str(self.level),
            "endpoint": self.endpoint,
            "region": self.region,
            "addressing": self.addressing,
            "run_id": self.run_id,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_ms": int((self.finished_at - self.started_at).total_seconds() * 1000),
            "selection": list(self.selection) if self.selection is not None else None,
            "leftover_buckets": list(self.leftovers),
            "checks": checks,
            "verdict": self.verdict.to_dict(),
            "results_sha256": results_hash(checks),
        }


def verdict_from_document(document: dict[str, Any]) -> Verdict:
    """Recompute the verdict a report document's own results support."""
    results = [CheckResult.from_dict(c) for c in document["checks"]]
    return compute_verdict(
        Level(document["level"]), results, partial=document.get("selection") is not None
    )


def level_names() -> Iterable[str]:
    return (str(level) for level in LEVELS)
