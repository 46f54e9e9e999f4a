"""Dependencies point inward: protocol -> domain -> store; core never touches the node."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "silverlining"


def imports_of(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (SRC / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        out[str(path.relative_to(SRC))] = names
    return out


@pytest.mark.parametrize(("package", "forbidden"), [
    ("core", ("silverlining.node", "silverlining.market", "silverlining.cli")),
    # The market is a client of provider nodes (OSB, S3, federation API), never a part of one.
    ("market", ("silverlining.node", "silverlining.cli")),
    ("node/domain", ("silverlining.node.protocol", "silverlining.node.app", "starlette",
                     "uvicorn", "silverlining.cli")),
    ("node/store", ("silverlining.node.protocol", "silverlining.node.domain.objects",
                    "silverlining.node.domain.buckets", "silverlining.node.domain.multipart",
                    "silverlining.node.domain.accounts", "silverlining.cli")),
    ("node/protocol", ("sqlalchemy", "silverlining.node.store.db",
                       "silverlining.node.store.schema")),
])
def test_layers(package: str, forbidden: tuple[str, ...]) -> None:
    bad = {
        module: sorted(n for n in names if n.startswith(forbidden))
        for module, names in imports_of(package).items()
    }
    assert {m: n for m, n in bad.items() if n} == {}
