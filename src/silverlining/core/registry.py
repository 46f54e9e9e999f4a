"""The check registry: every Core check, its stable id, its level and what it proves.

A check is a plain function taking a :class:`~silverlining.core.context.CheckContext`. It is
registered with the :func:`check` decorator, which records the metadata a report needs. The
registry only knows metadata and callables; running checks is the runner's business.

Ids are stable: once published, an id keeps its meaning. A check whose meaning changes gets a
new id, and the battery's version (:data:`silverlining.core.CORE_VERSION`) moves.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from silverlining.core.context import CheckContext


class Level(enum.StrEnum):
    """A certification level. Each level includes every level before it in :data:`LEVELS`."""

    S3_BASIC = "s3-basic"
    S3_FULL = "s3-full"

    @property
    def includes(self) -> tuple[Level, ...]:
        """The levels whose checks a run at this level must pass, this one included."""
        return LEVELS[: LEVELS.index(self) + 1]


#: Levels from the weakest to the strongest claim.
LEVELS: tuple[Level, ...] = (Level.S3_BASIC, Level.S3_FULL)

CheckFunc = Callable[["CheckContext"], None]

_ID = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+(-[a-z0-9]+)*){2,}$")


@dataclass(frozen=True)
class Check:
    """One behavioural check.

    ``statement`` is one sentence saying what a pass proves, written for a buyer.
    ``needs_alt`` marks checks that need a second account; without one they are skipped.
    ``weight`` is a rough cost used only to start expensive checks first.
    """

    id: str
    level: Level
    statement: str
    run: CheckFunc
    needs_alt: bool = False
    weight: int = 1

    @property
    def area(self) -> str:
        """The part of the id naming the area, e.g. ``object`` for ``s3.object.put-get``."""
        return self.id.split(".")[1]


class Registry:
    """An ordered collection of checks with unique ids."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, item: Check) -> None:
        """Register ``item``; its id must be well formed and unused."""
        if not _ID.match(item.id):
            raise ValueError(f"malformed check id {item.id!r}")
        if item.id in self._checks:
            raise ValueError(f"duplicate check id {item.id!r}")
        statement = item.statement
        if not statement or "\n" in statement or not statement.endswith("."):
            raise ValueError(f"{item.id}: the statement must be one sentence ending in '.'")
        self._checks[item.id] = item

    def check(
        self,
        check_id: str,
        level: Level,
        statement: str,
        *,
        needs_alt: bool = False,
        weight: int = 1,
    ) -> Callable[[CheckFunc], CheckFunc]:
        """Decorator registering a function as the check ``check_id``."""

        def register(func: CheckFunc) -> CheckFunc:
            self.add(Check(check_id, level, statement, func, needs_alt, weight))
            return func

        return register

    def __len__(self) -> int:
        return len(self._checks)

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._checks

    def get(self, check_id: str) -> Check:
        return self._checks[check_id]

    def all(self) -> list[Check]:
        """Every check, basic levels first, in registration order within a level."""
        return sorted(self._checks.values(), key=lambda c: LEVELS.index(c.level))

    def for_level(self, level: Level) -> list[Check]:
        """The checks a run at ``level`` must pass."""
        return [c for c in self.all() if c.level in level.includes]

    def select(self, checks: Iterable[Check], patterns: Iterable[str]) -> list[Check]:
        """The checks among ``checks`` whose id matches any shell-style pattern."""
        wanted = list(patterns)
        return [c for c in checks if any(fnmatch.fnmatchcase(c.id, p) for p in wanted)]


#: The registry the built-in checks register into.
REGISTRY = Registry()

#: Decorator registering a built-in check, see :meth:`Registry.check`.
check = REGISTRY.check


def load_checks() -> Registry:
    """The registry with every built-in check loaded."""
    import silverlining.core.checks  # noqa: F401  (registers on import)

    return REGISTRY
