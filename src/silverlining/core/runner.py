"""Running checks: one at a time in :func:`run_check`, a level's worth in :func:`run`.

Checks are independent (each works in buckets of its own), so they run on a small thread pool;
expensive ones start first so that the run's length is close to its longest check. The
outcome of a check is decided here, from the exception it ends with:

* none: ``passed``;
* :class:`CheckFailed` or an error from the provider (a ``ClientError``, a dropped connection,
  an unparseable answer): ``failed``, with evidence;
* :class:`CheckSkipped`: ``skipped``, with the reason;
* anything else: ``error`` (the check itself broke), with the exception as evidence.
"""

from __future__ import annotations

import datetime as dt
import http.client
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    MissingDependencyException,
    ParamValidationError,
)

import silverlining
from silverlining.core import CORE_VERSION
from silverlining.core.context import CheckContext, Session, Target, describe_client_error
from silverlining.core.evidence import (
    CheckFailed,
    CheckSkipped,
    Evidence,
    clip,
    forget_requests,
    last_request,
)
from silverlining.core.registry import Check, Level, load_checks
from silverlining.core.report import CheckResult, Report, Status

DEFAULT_WORKERS = 8


class Observer(Protocol):
    """Told about progress; called from worker threads, so implementations must be thread-safe."""

    def started(self, check: Check) -> None: ...

    def finished(self, result: CheckResult) -> None: ...


class _Silent:
    def started(self, check: Check) -> None:
        pass

    def finished(self, result: CheckResult) -> None:
        pass


def run_check(session: Session, check: Check) -> CheckResult:
    """Run one check, clean up after it, and say how it went. Never raises."""
    forget_requests()
    context = CheckContext(session, check)
    start = time.monotonic()
    status = Status.PASSED
    reason: str | None = None
    evidence: Evidence | None = None
    try:
        if check.needs_alt and session.alt_s3 is None:
            raise CheckSkipped("needs an alternate account (--alt-access-key/--alt-secret-key)")
        check.run(context)
    except CheckSkipped as skip:
        status, reason = Status.SKIPPED, skip.reason
    except CheckFailed as failure:
        status, evidence = Status.FAILED, failure.evidence
    except (ParamValidationError, MissingDependencyException) as error:
        # Raised before anything is sent: Core's own mistake or environment, not the provider's.
        status = Status.ERROR
        evidence = Evidence(
            "(not sent)", "the check to run to completion", clip(f"{type(error).__name__}: {error}")
        )
    except ClientError as error:
        status = Status.FAILED
        evidence = Evidence(last_request(), "the request to succeed", describe_client_error(error))
    except (BotoCoreError, OSError, http.client.HTTPException) as error:
        status = Status.FAILED
        evidence = Evidence(
            last_request(), "a well-formed HTTP answer", clip(f"{type(error).__name__}: {error}")
        )
    except Exception as error:  # a broken check must not take the run down
        status = Status.ERROR
        frames = traceback.extract_tb(error.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        evidence = Evidence(
            last_request(),
            "the check to run to completion",
            clip(f"{type(error).__name__}: {error}{where}"),
        )
    finally:
        context.cleanup()
    if evidence is not None and reason is None:
        reason = clip(f"expected {evidence.expected}; got {evidence.got}", 300)
    duration_ms = int((time.monotonic() - start) * 1000)
    return CheckResult(
        id=check.id,
        level=check.level,
        statement=check.statement,
        status=status,
        duration_ms=duration_ms,
        reason=reason,
        evidence=evidence,
        notes=tuple(context.notes),
    )


def run(
    session: Session,
    checks: Sequence[Check],
    *,
    workers: int = DEFAULT_WORKERS,
    observer: Observer | None = None,
) -> list[CheckResult]:
    """Run ``checks`` concurrently; results come back in the order of ``checks``.

    On KeyboardInterrupt, checks not yet started are dropped, running ones finish (and clean
    up), then the interrupt propagates.
    """
    watcher = observer or _Silent()
    order = sorted(range(len(checks)), key=lambda i: -checks[i].weight)
    results: dict[int, CheckResult] = {}

    def task(index: int) -> CheckResult:
        watcher.started(checks[index])
        result = run_check(session, checks[index])
        watcher.finished(result)
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="core-check")
    pending: dict[Future[CheckResult], int] = {}
    try:
        for index in order:
            pending[pool.submit(task, index)] = index
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                results[pending.pop(future)] = future.result()
    except KeyboardInterrupt:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return [results[i] for i in range(len(checks))]


@dataclass(frozen=True)
class Plan:
    """Which checks a run will execute."""

    level: Level
    checks: tuple[Check, ...]
    selection: tuple[str, ...] | None


def plan(level: Level, only: Sequence[str] = ()) -> Plan:
    """The checks of ``level``, narrowed to the ids matching ``only`` if given."""
    registry = load_checks()
    checks = registry.for_level(level)
    if only:
        checks = registry.select(checks, only)
        if not checks:
            raise ValueError(f"no {level} check matches {', '.join(only)}")
    return Plan(level, tuple(checks), tuple(only) if only else None)


def execute(
    target: Target,
    run_plan: Plan,
    *,
    workers: int = DEFAULT_WORKERS,
    observer: Observer | None = None,
    session: Session | None = None,
) -> Report:
    """Preflight, run the plan, sweep leftovers, and report.

    Raises :class:`~silverlining.core.context.TargetError` if the endpoint cannot be checked.
    """
    active = session or Session(target, workers=workers)
    try:
        started = dt.datetime.now(dt.UTC)
        active.preflight()
        results = run(active, run_plan.checks, workers=workers, observer=observer)
        leftovers = active.sweep()
        finished = dt.datetime.now(dt.UTC)
    finally:
        if session is None:
            active.close()
    return Report(
        core_version=CORE_VERSION,
        silverlining_version=silverlining.__version__,
        level=run_plan.level,
        endpoint=target.base_url,
        region=target.region,
        addressing=target.addressing,
        run_id=active.run_id,
        started_at=started,
        finished_at=finished,
        results=tuple(results),
        selection=run_plan.selection,
        leftovers=tuple(leftovers),
    )
