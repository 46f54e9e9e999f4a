"""Read py-spy's raw (collapsed-stack) output: a top listing and a flame graph.

    python -m harness.pyspy_report FILE.txt... [--limit N]

For each FILE.txt, prints where the samples land, by function (self and inclusive) and by
source file, so the shares of the HTTP layer, the S3 logic, the database and hashing can be
read off; and writes FILE.svg, a flame graph (hover a frame for its share).
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(path: str) -> str:
    """A file path from the interpreter's or a venv's lib, or from src/, made relative."""
    for marker in ("site-packages/", "/src/"):
        if marker in path:
            return path.split(marker, 1)[1]
    if "/lib/python3." in path:
        return path.split("/lib/python3.", 1)[1].split("/", 1)[1]
    return path


def _parts(frame: str) -> tuple[str, str]:
    """'handler (/x/src/silverlining/node/app.py:42)' -> ('handler', 'silverlining/node/app.py')"""
    m = _FRAME.match(frame)
    return (m["func"], _short(m["file"])) if m else (frame, "")


@dataclass
class Node:
    name: str
    count: int = 0
    children: dict[str, Node] = field(default_factory=dict)


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = []
            for frame in stack.split(";"):
                func, file = _parts(frame)
                if frame.startswith("process "):
                    frames.append(frame.split(":", 1)[0])
                elif frame:
                    frames.append(f"{func} ({file})" if file else func)
            stacks.append((frames, int(count)))
    return stacks


def top(path: Path, stacks: list[tuple[list[str], int]], limit: int) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    files: Counter[str] = Counter()
    total = sum(n for _, n in stacks)
    for frames, n in stacks:
        if not frames:
            continue
        own[frames[-1]] += n
        leaf_file = frames[-1].rpartition(" (")[2].rstrip(")")
        files[leaf_file] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return f"{path.name}: no samples\n"

    def block(title: str, counter: Counter[str]) -> list[str]:
        rows = [f"{100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(limit)]
        return [title, *rows, ""]

    out = [f"== {path.name}: {total} samples of busy (non-idle) threads", ""]
    out += block("-- self time by function", own)
    out += block("-- self time by file", files)
    out += block("-- inclusive time by function", inclusive)
    return "\n".join(out)


# --- flame graph ------------------------------------------------------------------------------
_WIDTH = 1400
_ROW = 17


def _color(name: str) -> str:
    """Our code blue-green, everything else warm; stable per name."""
    h = zlib.crc32(name.encode())
    if "silverlining/" in name:
        return f"rgb({60 + h % 40},{140 + h % 60},{190 + h % 50})"
    return f"rgb({215 + h % 40},{90 + h % 120},{40 + h % 40})"


def flame_svg(stacks: list[tuple[list[str], int]], title: str) -> str:
    root = Node("all")
    for frames, n in stacks:
        root.count += n
        node = root
        for frame in frames:
            node = node.children.setdefault(frame, Node(frame))
            node.count += n
    total = root.count or 1
    rects: list[str] = []
    depth_max = 0

    def emit(node: Node, x: float, depth: int) -> None:
        nonlocal depth_max
        width = node.count / total * _WIDTH
        if width < 0.3:
            return
        depth_max = max(depth_max, depth)
        label = node.name if width > 30 else ""
        chars = int(width / 6.6)
        if len(label) > chars:
            label = label[: max(chars - 2, 0)] + ".." if chars > 3 else ""
        pct = 100 * node.count / total
        rects.append(
            f"<g><title>{html.escape(node.name)} — {node.count} samples, {pct:.2f}%</title>"
            f'<rect x="{x:.1f}" y="{{y{depth}}}" width="{width:.1f}" height="{_ROW - 1}" '
            f'fill="{_color(node.name)}"/>'
            f'<text x="{x + 3:.1f}" y="{{t{depth}}}">{html.escape(label)}</text></g>'
        )
        offset = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            emit(child, offset, depth + 1)
            offset += child.count / total * _WIDTH

    emit(root, 0.0, 0)
    height = (depth_max + 1) * _ROW + 40
    body = "\n".join(rects)
    for depth in range(depth_max + 1):
        y = height - (depth + 1) * _ROW
        body = body.replace(f'"{{y{depth}}}"', f'"{y}"').replace(
            f'"{{t{depth}}}"', f'"{y + _ROW - 5}"'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        'font-family="monospace" font-size="11">\n'
        f'<text x="4" y="18" font-size="15">{html.escape(title)}</text>\n{body}\n</svg>\n'
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--limit", type=int, default=30)
    args = parser.parse_args(argv)
    for path in args.files:
        stacks = read_stacks(path)
        print(top(path, stacks, args.limit))
        samples = sum(n for _, n in stacks)
        path.with_suffix(".svg").write_text(flame_svg(stacks, f"{path.stem}: {samples} samples"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
