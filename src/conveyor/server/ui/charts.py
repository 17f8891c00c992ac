"""Line charts as inline SVG, drawn on the server: no chart library, no script, readable
without JavaScript. Every label is escaped (release ids come from the store)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 170
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 24, 40  # room for the axes' labels and the legend
COLOURS = ("#1f6feb", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#57606a")

Points = Sequence[tuple[float, float]]  # (epoch seconds, value)


def line_chart(
    title: str,
    series: Mapping[str, Points],
    *,
    unit: Callable[[float], str] = lambda v: f"{v:g}",
    steps: bool = False,
    time_format: str = "%H:%M:%S",
) -> Markup:
    """One chart of several series (name -> points); `steps` draws each value until the
    next (weights); `time_format` labels the time axis (strftime, UTC); an empty chart
    says there is nothing to draw."""
    # By name, so a release keeps its colour from one chart to the next.
    finite = {name: [(t, v) for t, v in series[name] if math.isfinite(v)] for name in series}
    drawn = {name: sorted(finite[name]) for name in sorted(finite) if finite[name]}
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<text x="{LEFT}" y="12" class="caption">{escape(title)}</text>'
    )
    if not drawn:
        empty = f'<text x="{LEFT}" y="{HEIGHT // 2}" class="muted">no samples yet</text>'
        return Markup(head + empty + "</svg>")  # noqa: S704 (no text in it)
    times = [t for points in drawn.values() for t, _ in points]
    values = [v for points in drawn.values() for _, v in points]
    t0, t1 = min(times), max(times)
    top = max(values) or 1.0
    bottom = min(0.0, *values)

    def x(t: float) -> float:
        return LEFT + (t - t0) / ((t1 - t0) or 1.0) * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (top - v) / ((top - bottom) or 1.0) * (HEIGHT - TOP - BOTTOM)

    labels = (unit(top), unit(bottom))
    parts = [head, _axes((y(top), y(bottom)), labels, (t0, t1), time_format)]
    for index, (name, points) in enumerate(drawn.items()):
        colour = COLOURS[index % len(COLOURS)]
        coords = _path(points, steps)
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in coords)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{line}">'
            f"<title>{escape(name)}</title></polyline>"
        )
        legend_x = LEFT + index * 150
        parts.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 12}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="{HEIGHT - 3}">{escape(_short(name))}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text escaped above)


def _path(points: Points, steps: bool) -> list[tuple[float, float]]:
    if not steps:
        return list(points)
    stepped: list[tuple[float, float]] = []
    for t, v in points:
        if stepped:
            stepped.append((t, stepped[-1][1]))
        stepped.append((t, v))
    return stepped


def _axes(
    heights: tuple[float, float],
    labels: tuple[str, str],
    times: tuple[float, float],
    time_format: str = "%H:%M:%S",
) -> str:
    """The value axis (top and bottom labelled) and the time axis (first and last)."""
    (y_top, y_bottom), (top, bottom), (t0, t1) = heights, labels, times
    right = WIDTH - RIGHT
    first, last = _clock(t0, time_format), _clock(t1, time_format)
    return (
        f'<line x1="{LEFT}" y1="{y_bottom:.1f}" x2="{right}" y2="{y_bottom:.1f}" class="axis"/>'
        f'<line x1="{LEFT}" y1="{y_top:.1f}" x2="{right}" y2="{y_top:.1f}" class="grid"/>'
        f'<text x="{LEFT - 4}" y="{y_top + 4:.1f}" text-anchor="end">{escape(top)}</text>'
        f'<text x="{LEFT - 4}" y="{y_bottom + 4:.1f}" text-anchor="end">{escape(bottom)}</text>'
        f'<text x="{LEFT}" y="{y_bottom + 14:.1f}">{escape(first)}</text>'
        f'<text x="{right}" y="{y_bottom + 14:.1f}" text-anchor="end">{escape(last)}</text>'
    )


def _clock(ts: float, time_format: str = "%H:%M:%S") -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(time_format)


def _short(name: str) -> str:
    return name if len(name) <= 22 else name[:21] + "…"


def percent(value: float) -> str:
    return f"{value * 100:.2g} %"


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def per_second(value: float) -> str:
    return f"{value:.3g}/s"
