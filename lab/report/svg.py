"""Small, dependency-free SVG charts: line (optionally log-x, with points) and bar (grouped or stacked).

Every chart is one `<svg class="plot" data-plot="<name>">` string sized by its viewBox, with a
`<title>` for screen readers and a native tooltip (`<title>`) on every point and bar. Output is
deterministic: coordinates are printed with one decimal, tick labels by fixed rules, so the same
data always gives the same bytes. Text is XML-escaped; NaN and infinite values are left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Literal

from lab.analysis.render import number as plain_number

# Tableau 10: distinguishable, and readable on white
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
WIDTH = 640
HEIGHT = 320
CHAR_PX = 6.4  # average width of an 11 px sans-serif character: legend and margin layout
TICK_FONT = 11
AXIS = "#555"
GRID = "#e4e4e4"

Format = Literal["number", "percent"]


def color(index: int) -> str:
    """The palette's colour number `index` (wrapping around)."""
    return PALETTE[index % len(PALETTE)]


def text(value: object) -> str:
    """XML-escaped text, safe in element content and in double-quoted attributes."""
    return escape(str(value), quote=True)


def coordinate(x: float) -> str:
    """A coordinate as printed in the SVG: one decimal, no negative zero."""
    formatted = f"{x:.1f}"
    return "0.0" if formatted == "-0.0" else formatted


def number(x: float) -> str:
    """A tick label: round numbers stay short (0.5, 20, 2.5k, 1M)."""
    x = float(f"{x:.12g}")  # 0.30000000000000004 -> 0.3
    if x == 0:
        return "0"
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    if abs(x) >= 1e4:
        return f"{x / 1e3:g}k"
    return f"{x:g}"


def percent(x: float) -> str:
    """A share as a tick label: 0.25 -> 25 %."""
    return f"{number(100 * x)} %"


def exact(x: float) -> str:
    """A value in a tooltip, to a sensible precision."""
    return plain_number(x)


@dataclass(frozen=True)
class Series:
    """One named line (or set of points) of a line chart; `labels` annotate single points."""

    name: str
    x: Sequence[float]
    y: Sequence[float]
    color: str
    dash: str = ""  # an SVG stroke-dasharray, e.g. "5 3"
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class Bars:
    """One named set of bars: one value per category of a bar chart."""

    name: str
    values: Sequence[float]
    color: str


@dataclass(frozen=True)
class Reference:
    """A horizontal reference line (a target) across a line chart."""

    y: float
    label: str


@dataclass(frozen=True)
class Window:
    """A shaded span of the x axis (an injected fault's window) on a line chart."""

    start: float
    end: float
    label: str


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def linear_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round ticks (1, 2 or 5 times a power of ten) from at or below `low` to at or above `high`."""
    if not finite(low, high):
        return [0.0, 1.0]
    if high <= low:
        pad = abs(low) * 0.1 or 1.0
        low, high = (low - pad if low < 0 else max(0.0, low - pad)), high + pad
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [float(f"{i * step:.12g}") for i in range(first, last + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Decades covering [low, high] (both > 0); with 1, 2 and 5 in each decade when there are at most two."""
    first = math.floor(math.log10(low) + 1e-9)
    last = math.ceil(math.log10(high) - 1e-9)
    if last <= first:
        last = first + 1
    mantissas = (1.0, 2.0, 5.0) if last - first <= 2 else (1.0,)
    ticks = [float(f"{m * 10.0**k:.12g}") for k in range(first, last) for m in mantissas]
    return [*ticks, float(f"{10.0**last:.12g}")]


@dataclass(frozen=True)
class Axis:
    """A data range mapped onto a pixel range, linear or log10."""

    low: float
    high: float
    start_px: float
    end_px: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            low, high, value = math.log10(self.low), math.log10(self.high), math.log10(value)
        else:
            low, high = self.low, self.high
        share = (value - low) / (high - low) if high != low else 0.5
        return self.start_px + share * (self.end_px - self.start_px)


@dataclass(frozen=True)
class Frame:
    """The plot area of a chart, inside its margins."""

    left: float
    top: float
    right: float
    bottom: float


def legend(entries: Sequence[tuple[str, str, str]], width: float, marker: Literal["line", "box"]) -> tuple[str, float]:
    """Legend items (name, colour, dash) laid out in rows across the top; returns the SVG and its height."""
    parts: list[str] = []
    x, y, row_height = 8.0, 14.0, 16.0
    entries = list(dict.fromkeys(entries))  # series sharing name, colour and dash share one entry
    for name, colour, dash in entries:
        item_width = 22 + CHAR_PX * len(name) + 14
        if x > 8 and x + item_width > width - 8:
            x, y = 8.0, y + row_height
        if marker == "line":
            style = f' stroke-dasharray="{text(dash)}"' if dash else ""
            parts.append(
                f'<line x1="{coordinate(x)}" y1="{coordinate(y - 4)}" x2="{coordinate(x + 16)}" '
                f'y2="{coordinate(y - 4)}" stroke="{text(colour)}" stroke-width="2.5"{style}/>'
            )
        else:
            parts.append(
                f'<rect x="{coordinate(x + 3)}" y="{coordinate(y - 10)}" width="10" height="10" fill="{text(colour)}"/>'
            )
        parts.append(f'<text x="{coordinate(x + 22)}" y="{coordinate(y)}">{text(name)}</text>')
        x += item_width
    height = y + 8 if entries else 0.0
    return f'<g class="legend">{"".join(parts)}</g>', height


def y_axis(axis: Axis, ticks: Sequence[float], frame: Frame, label: str, fmt: Callable[[float], str]) -> str:
    parts = []
    for tick in ticks:
        y = coordinate(axis(tick))
        parts.append(
            f'<line x1="{coordinate(frame.left)}" y1="{y}" x2="{coordinate(frame.right)}" y2="{y}" stroke="{GRID}"/>'
        )
        parts.append(
            f'<text x="{coordinate(frame.left - 6)}" y="{y}" dy="0.32em" text-anchor="end">{text(fmt(tick))}</text>'
        )
    middle = coordinate((frame.top + frame.bottom) / 2)
    parts.append(
        f'<text transform="translate(14,{middle}) rotate(-90)" text-anchor="middle" fill="{AXIS}">{text(label)}</text>'
    )
    parts.append(
        f'<line x1="{coordinate(frame.left)}" y1="{coordinate(frame.top)}" x2="{coordinate(frame.left)}" '
        f'y2="{coordinate(frame.bottom)}" stroke="{AXIS}"/>'
    )
    return f'<g class="y-axis">{"".join(parts)}</g>'


def x_axis_line(frame: Frame) -> str:
    return (
        f'<line x1="{coordinate(frame.left)}" y1="{coordinate(frame.bottom)}" x2="{coordinate(frame.right)}" '
        f'y2="{coordinate(frame.bottom)}" stroke="{AXIS}"/>'
    )


def x_label(frame: Frame, label: str) -> str:
    return (
        f'<text x="{coordinate((frame.left + frame.right) / 2)}" y="{coordinate(HEIGHT - 6)}" '
        f'text-anchor="middle" fill="{AXIS}">{text(label)}</text>'
    )


def svg(name: str, title: str, body: Sequence[str]) -> str:
    """The root element every chart shares."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="{text(name)}" role="img" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
        f'font-size="{TICK_FONT}"><title>{text(title)}</title>{"".join(body)}</svg>'
    )


def thinning(count: int, step_px: float, labels: Sequence[str]) -> int:
    """Label every n-th of `count` ticks `step_px` apart so that labels (up to 12 characters) do not overlap."""
    widest = CHAR_PX * (min(max((len(label) for label in labels), default=1), 12) + 1)
    return max(math.ceil(widest / step_px), 1) if step_px > 0 else max(count, 1)


def left_margin(labels: Sequence[str]) -> float:
    return 30 + CHAR_PX * max((len(label) for label in labels), default=1)


def no_data(frame: Frame) -> str:
    return (
        f'<text x="{coordinate((frame.left + frame.right) / 2)}" y="{coordinate((frame.top + frame.bottom) / 2)}" '
        f'text-anchor="middle" fill="{AXIS}">no data</text>'
    )


def kept(s: Series, log_x: bool) -> list[tuple[float, float, str]]:
    """A series' drawable points (x, y, label): finite, and x > 0 on a log axis."""
    labels = list(s.labels)
    return [
        (float(x), float(y), labels[i] if i < len(labels) else "")
        for i, (x, y) in enumerate(zip(s.x, s.y, strict=True))
        if finite(float(x), float(y)) and (not log_x or x > 0)
    ]


def line_chart(
    name: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label_text: str,
    y_label_text: str,
    log_x: bool = False,
    lines: bool = True,
    markers: bool = False,
    y_zero: bool = True,
    y_format: Format = "number",
    x_ticks: Sequence[tuple[float, str]] | None = None,
    x_range: tuple[float, float] | None = None,
    references: Sequence[Reference] = (),
    windows: Sequence[Window] = (),
) -> str:
    """Several named series against a shared x axis (log10 when `log_x`; points with x <= 0 are then
    dropped). `markers` draws a dot per point with a tooltip; `x_ticks` replaces the automatic ticks;
    `x_range` widens the x axis to cover it (a time axis from 0 to the end of the last bin)."""
    points = [kept(s, log_x) for s in series]
    xs = [x for ps in points for x, _, _ in ps]
    ys = [y for ps in points for _, y, _ in ps] + [r.y for r in references if math.isfinite(r.y)]
    fmt = percent if y_format == "percent" else number
    legend_svg, legend_height = legend([(s.name, s.color, s.dash) for s in series], WIDTH, "line")
    y_tick_values = linear_ticks(min([*ys, 0.0]) if y_zero else min(ys), max(ys)) if ys else [0.0, 1.0]
    frame = Frame(left_margin([fmt(t) for t in y_tick_values]), legend_height + 10, WIDTH - 18, HEIGHT - 40)
    if x_ticks:  # given ticks (trial numbers) sit inside the frame, half a step from its edges
        x_tick_values, x_tick_labels = [t for t, _ in x_ticks], [label for _, label in x_ticks]
        low, high = min(x_tick_values), max(x_tick_values)
        pad = (high - low) / (len(x_tick_values) - 1) / 2 if high > low else 0.5
        x_axis = Axis(low - pad, high + pad, frame.left, frame.right)
    else:
        span = [*xs, *(x_range or ())]
        if span:
            x_tick_values = log_ticks(min(span), max(span)) if log_x else linear_ticks(min(span), max(span))
        else:
            x_tick_values = [1.0, 10.0] if log_x else [0.0, 1.0]
        x_tick_labels = [number(t) for t in x_tick_values]
        x_axis = Axis(x_tick_values[0], x_tick_values[-1], frame.left, frame.right, log=log_x)
    y_axis_map = Axis(y_tick_values[0], y_tick_values[-1], frame.bottom, frame.top)
    body = [legend_svg, y_axis(y_axis_map, y_tick_values, frame, y_label_text, fmt), x_axis_line(frame)]
    every = thinning(len(x_tick_values), (frame.right - frame.left) / max(len(x_tick_values), 1), x_tick_labels)
    for i, (tick, label) in enumerate(zip(x_tick_values, x_tick_labels, strict=True)):
        if i % every:
            continue
        tick_x = coordinate(x_axis(tick))
        body.append(
            f'<line x1="{tick_x}" y1="{coordinate(frame.bottom)}" x2="{tick_x}" y2="{coordinate(frame.bottom + 4)}" '
            f'stroke="{AXIS}"/><text x="{tick_x}" y="{coordinate(frame.bottom + 16)}" text-anchor="middle">'
            f"{text(label)}</text>"
        )
    body.append(x_label(frame, x_label_text))
    for window in windows:
        x0, x1 = x_axis(max(window.start, x_axis.low)), x_axis(min(window.end, x_axis.high))
        body.append(
            f'<g class="window"><rect x="{coordinate(x0)}" y="{coordinate(frame.top)}" '
            f'width="{coordinate(max(x1 - x0, 1.0))}" '
            f'height="{coordinate(frame.bottom - frame.top)}" fill="#d62728" fill-opacity="0.12"/>'
            f'<text x="{coordinate(x0)}" y="{coordinate(frame.top)}" dx="3" dy="1em" fill="#a61c1c">'
            f"{text(window.label)}</text></g>"
        )
    for reference in references:
        if not math.isfinite(reference.y):
            continue
        ref_y = coordinate(y_axis_map(reference.y))
        body.append(
            f'<g class="reference"><line x1="{coordinate(frame.left)}" y1="{ref_y}" x2="{coordinate(frame.right)}" '
            f'y2="{ref_y}" stroke="#999" stroke-dasharray="6 4"/><text x="{coordinate(frame.right - 4)}" y="{ref_y}" '
            f'dy="-0.4em" text-anchor="end" fill="#777">{text(reference.label)}</text></g>'
        )
    for s, ps in zip(series, points, strict=True):
        parts = []
        if lines and len(ps) > 1:
            dash = f' stroke-dasharray="{text(s.dash)}"' if s.dash else ""
            coords = " ".join(f"{coordinate(x_axis(x))},{coordinate(y_axis_map(y))}" for x, y, _ in ps)
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{text(s.color)}" stroke-width="2"'
                f' stroke-linejoin="round"{dash}/>'
            )
        if markers or len(ps) == 1:
            for x, y, label in ps:
                cx, cy = coordinate(x_axis(x)), coordinate(y_axis_map(y))
                shown = f"{100 * y:.1f} %" if y_format == "percent" else exact(y)
                tip = f"{s.name}{' ' + label if label else ''}: {exact(x)}, {shown}"
                parts.append(
                    f'<circle cx="{cx}" cy="{cy}" r="3.5" fill="{text(s.color)}"><title>{text(tip)}</title></circle>'
                )
                if label:
                    parts.append(f'<text x="{cx}" y="{cy}" dx="5" dy="-5" fill="#333">{text(label)}</text>')
        body.append(f'<g class="series" data-series="{text(s.name)}">{"".join(parts)}</g>')
    if not xs:
        body.append(no_data(frame))
    return svg(name, title, body)


def bar_chart(
    name: str,
    title: str,
    categories: Sequence[str],
    bars: Sequence[Bars],
    *,
    y_label_text: str,
    x_label_text: str = "",
    stacked: bool = False,
    y_format: Format = "number",
    totals: bool = False,
    segment_labels: bool = False,
) -> str:
    """One group of bars per category: side by side (grouped) or on top of each other (`stacked`,
    non-negative values only). `totals` prints each stack's sum above it; `segment_labels` prints
    each stacked value inside its segment when the segment is tall enough."""
    fmt = percent if y_format == "percent" else number
    clean = [[v if math.isfinite(v) else 0.0 for v in b.values] for b in bars]
    if stacked:
        clean = [[max(v, 0.0) for v in values] for values in clean]
        heights = [sum(values[i] for values in clean) for i in range(len(categories))]
        low, high = 0.0, max(heights, default=0.0)
    else:
        flat = [v for values in clean for v in values]
        low, high = min([*flat, 0.0]), max([*flat, 0.0])
    y_tick_values = linear_ticks(low, high * (1.08 if totals else 1.0))
    legend_svg, legend_height = legend([(b.name, b.color, "") for b in bars], WIDTH, "box")
    frame = Frame(left_margin([fmt(t) for t in y_tick_values]), legend_height + 10, WIDTH - 18, HEIGHT - 40)
    y_axis_map = Axis(y_tick_values[0], y_tick_values[-1], frame.bottom, frame.top)
    body = [legend_svg, y_axis(y_axis_map, y_tick_values, frame, y_label_text, fmt)]
    band = (frame.right - frame.left) / max(len(categories), 1)
    every = thinning(len(categories), band, categories)
    max_chars = max(int(band * every / CHAR_PX) - 1, 3)
    zero = y_axis_map(0.0)
    for i, category in enumerate(categories):
        left = frame.left + i * band
        shown = category if len(category) <= max_chars else category[: max_chars - 1] + "…"
        if i % every == 0:
            body.append(
                f'<text x="{coordinate(left + band / 2)}" y="{coordinate(frame.bottom + 16)}" text-anchor="middle">'
                f"<title>{text(category)}</title>{text(shown)}</text>"
            )
        if stacked:
            width = band * 0.6
            base = 0.0
            for b, values in zip(bars, clean, strict=True):
                value = values[i]
                if value <= 0:
                    continue
                top, bottom = y_axis_map(base + value), y_axis_map(base)
                body.append(bar(left + (band - width) / 2, top, width, bottom - top, b, category, value, fmt))
                if segment_labels and bottom - top >= 16:
                    body.append(
                        f'<text x="{coordinate(left + band / 2)}" y="{coordinate((top + bottom) / 2)}" dy="0.32em" '
                        f'text-anchor="middle" fill="#222">{text(tooltip_value(value, fmt))}</text>'
                    )
                base += value
            if totals and base > 0 and band >= CHAR_PX * (len(exact(base)) + 1):  # only where it fits
                body.append(
                    f'<text x="{coordinate(left + band / 2)}" y="{coordinate(y_axis_map(base) - 4)}" '
                    f'text-anchor="middle" fill="#333">{text(exact(base))}</text>'
                )
        else:
            width = band * 0.8 / max(len(bars), 1)
            for j, (b, values) in enumerate(zip(bars, clean, strict=True)):
                y = y_axis_map(values[i])
                top, height = min(y, zero), abs(zero - y)
                body.append(bar(left + band * 0.1 + j * width, top, width, height, b, category, values[i], fmt))
    body.append(
        f'<line x1="{coordinate(frame.left)}" y1="{coordinate(zero)}" x2="{coordinate(frame.right)}" '
        f'y2="{coordinate(zero)}" stroke="{AXIS}"/>'
    )
    if x_label_text:
        body.append(x_label(frame, x_label_text))
    if not categories or not bars:
        body.append(no_data(frame))
    return svg(name, title, body)


def bar(
    x: float, y: float, width: float, height: float, b: Bars, category: str, value: float, fmt: Callable[[float], str]
) -> str:
    shown = tooltip_value(value, fmt)
    return (
        f'<rect x="{coordinate(x)}" y="{coordinate(y)}" width="{coordinate(width)}" height="{coordinate(height)}" '
        f'fill="{text(b.color)}"><title>{text(f"{category}, {b.name}: {shown}")}</title></rect>'
    )


def tooltip_value(value: float, fmt: Callable[[float], str]) -> str:
    return f"{100 * value:.1f} %" if fmt is percent else exact(value)
