"""Charts as server-rendered SVG: no script, no network, readable by screen readers (each
chart has a title and a description; the data is also in a table beside it)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 640, 200, 36


def line_chart(title: str, points: Sequence[tuple[str, float | None]], *, unit: str,
               y_max: float | None = None, y_min: float = 0.0) -> str:
    """A line over ``points`` (label, value); None values are gaps. Returns an <svg>."""
    values = [v for _, v in points if v is not None]
    top = y_max if y_max is not None else (max(values) * 1.1 if values else 1.0)
    top = max(top, y_min + 1e-9)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    n = max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (PAD + inner_w * i / n, PAD + inner_h * (1 - (v - y_min) / (top - y_min)))

    segments: list[list[str]] = [[]]
    for i, (_, v) in enumerate(points):
        if v is None:
            segments.append([])
            continue
        x, y = xy(i, v)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(f'<polyline fill="none" stroke="#1f6feb" stroke-width="2" '
                    f'points="{" ".join(seg)}"/>' for seg in segments if seg)
    dots = "".join(
        f'<circle cx="{xy(i, v)[0]:.1f}" cy="{xy(i, v)[1]:.1f}" r="2.5" fill="#1f6feb">'
        f"<title>{escape(label)}: {v:g} {escape(unit)}</title></circle>"
        for i, (label, v) in enumerate(points) if v is not None)
    first = escape(points[0][0]) if points else ""
    last = escape(points[-1][0]) if points else ""
    desc = (f"{len(values)} values from {first} to {last}; min {min(values):g}, "
            f"max {max(values):g} {escape(unit)}") if values else "no data yet"
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="t-{id(points)}" '
        f'class="chart" preserveAspectRatio="xMidYMid meet">'
        f'<title id="t-{id(points)}">{escape(title)}</title><desc>{desc}</desc>'
        f'<rect x="{PAD}" y="{PAD}" width="{inner_w}" height="{inner_h}" fill="#f6f8fa" '
        f'stroke="#d0d7de"/>'
        f'<text x="4" y="{PAD + 4}" font-size="11">{top:g}</text>'
        f'<text x="4" y="{PAD + inner_h}" font-size="11">{y_min:g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">{last}'
        f"</text>{lines}{dots}</svg>")
