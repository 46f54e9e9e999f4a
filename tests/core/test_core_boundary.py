"""Core is a pure client: it never imports the provider node's (or the market's) code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import silverlining.core

CORE_DIR = Path(silverlining.core.__file__).resolve().parent
FORBIDDEN = ("silverlining.node", "silverlining.market")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = "silverlining." + ".".join(path.relative_to(CORE_DIR.parent).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                found.add(".".join([*base, node.module or ""]).rstrip("."))
            else:
                found.add(node.module or "")
    return found


def test_no_core_module_imports_the_node_or_the_market() -> None:
    files = sorted(CORE_DIR.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        for module in _imported_modules(path):
            assert not module.startswith(FORBIDDEN), f"{path} imports {module}"


def test_loading_all_of_core_leaves_the_node_unimported() -> None:
    program = (
        "import json, sys\n"
        "import silverlining.core.cli, silverlining.core.runner\n"
        "from silverlining.core.registry import load_checks\n"
        "load_checks()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('silverlining'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], check=True, capture_output=True, text=True
    )
    loaded = json.loads(out.stdout)
    assert "silverlining.core.checks.isolation" in loaded
    assert [m for m in loaded if m.startswith(FORBIDDEN)] == []
