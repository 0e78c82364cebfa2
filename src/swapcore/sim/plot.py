"""Timeline pictures of simulation runs (needs matplotlib: the ``plot`` extra).

One panel per run, one lane per model. Each load is a bar: light while
loading, solid while ready, grey while stopping. Above the bar, a red line
spans each served request's wait (arrival to grant); a black ``x`` marks a
request that was refused or failed. A request whose caller gave up
(abandoned) has a grey line from its arrival to the give-up, where its ``x``
is. matplotlib is imported only when a picture is drawn, through its
object-oriented API (no pyplot global state).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from swapcore.sim.report import ABANDONED, SERVED, SimReport

__all__ = ["plot_timeline"]

_COLOURS = (
    "#4C72B0",
    "#DD8452",
    "#55A868",
    "#C44E52",
    "#8172B3",
    "#937860",
    "#DA8BC3",
    "#8C8C8C",
    "#CCB974",
    "#64B5CD",
)


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "drawing timelines needs matplotlib: pip install 'swapcore[plot]'"
        ) from exc
    return Figure, LineCollection


def plot_timeline(
    reports: SimReport | Mapping[str, SimReport],
    path: str | os.PathLike[str],
    *,
    start: float | None = None,
    end: float | None = None,
    width: float = 9.0,
    height: float | None = None,
    dpi: int = 100,
) -> None:
    """Draw the runs' timelines into a PNG (or any format matplotlib infers from ``path``).

    ``reports`` is one report or several keyed by label (one panel each,
    sharing the time axis). ``start``/``end`` clip the time axis (default:
    0 to the latest makespan). ``width`` and ``height`` are in inches at
    ``dpi`` (default 9 in x 100 dpi = 900 px wide; the height grows with the
    number of panels and lanes). Raises ``ImportError`` naming the ``plot``
    extra when matplotlib is missing.
    """
    figure_class, line_collection = _matplotlib()
    runs = {"": reports} if isinstance(reports, SimReport) else dict(reports)
    if not runs:
        raise ValueError("plot_timeline: no reports to draw")
    lanes = _lanes(list(runs.values()))
    left = 0.0 if start is None else start
    right = max((r.makespan for r in runs.values()), default=0.0) if end is None else end
    if right <= left:
        right = left + 1.0
    panel = max(1.3, 0.32 * len(lanes) + 0.9)
    figure = figure_class(
        figsize=(width, height if height is not None else panel * len(runs) + 0.3),
        dpi=dpi,
        layout="constrained",
    )
    axes = figure.subplots(len(runs), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (label, report) in zip(axes, runs.items(), strict=True):
        _draw(ax, report, label, lanes, left, right, line_collection)
    gave_up = any(report.abandoned for report in runs.values())
    axes[-1].set_xlabel(
        "time (s)    bars: loading (light), ready (solid), stopping (grey);  "
        "red: request waits;  x: refused or failed"
        + (";  grey line and x: gave up" if gave_up else ""),
        fontsize=8,
    )
    figure.savefig(os.fspath(path), dpi=dpi)


def _lanes(reports: Sequence[SimReport]) -> list[str]:
    models: dict[str, None] = {}
    for report in reports:
        models.update(dict.fromkeys(report.loads_per_model))
        models.update(dict.fromkeys(report.waits_by_model))
    return list(models)


def _draw(
    ax: Any,
    report: SimReport,
    label: str,
    lanes: Sequence[str],
    left: float,
    right: float,
    line_collection: Any,
) -> None:
    row = {model: index for index, model in enumerate(lanes)}
    for interval in report.timeline:
        if interval.end < left or interval.start > right:
            continue
        y = row[interval.model]
        colour = _COLOURS[y % len(_COLOURS)]
        ready = interval.ready if interval.ready is not None else interval.end
        stop = interval.stop_began if interval.stop_began is not None else interval.end
        bars = [
            ((interval.start, ready - interval.start), colour, 0.35),
            ((ready, stop - ready), colour, 0.9),
            ((stop, interval.end - stop), "#999999", 0.9),
        ]
        for (x, w), face, alpha in bars:
            if w > 0:
                ax.broken_barh([(x, w)], (y - 0.3, 0.45), facecolors=face, alpha=alpha)
    waits = []
    gave_up = []
    refused_x: list[float] = []
    refused_y: list[float] = []
    for record in report.requests:
        lane = row.get(record.model)
        if lane is None or record.arrived > right:
            continue
        y = lane
        if record.outcome == ABANDONED and record.finished is not None:
            level = y + 0.24 + 0.06 * (record.id % 4)
            gave_up.append([(record.arrived, level), (record.finished, level)])
            if left <= record.finished <= right:
                refused_x.append(record.finished)
                refused_y.append(y + 0.33)
            continue
        if record.outcome != SERVED:
            if record.arrived >= left:
                refused_x.append(record.arrived)
                refused_y.append(y + 0.33)
            continue
        if record.started is not None and record.wait > 0 and record.started >= left:
            # Stagger overlapping waits over four thin rows under the bar.
            level = y + 0.24 + 0.06 * (record.id % 4)
            waits.append([(record.arrived, level), (record.started, level)])
    if waits:
        ax.add_collection(line_collection(waits, colors="#C00000", linewidths=1.0, alpha=0.5))
    if gave_up:
        ax.add_collection(line_collection(gave_up, colors="#808080", linewidths=1.0, alpha=0.6))
    if refused_x:
        ax.scatter(refused_x, refused_y, marker="x", s=12, color="black", linewidths=0.8)
    ax.set_yticks(range(len(lanes)), labels=list(lanes))
    ax.set_ylim(len(lanes) - 0.35, -0.7)
    ax.set_xlim(left, right)
    ax.grid(axis="x", alpha=0.3)
    title = (
        f"loads {report.total_loads}   wait p99 {report.waits.p99:.1f} s   "
        f"max {report.waits.max:.1f} s"
    )
    ax.set_title(f"{label}: {title}" if label else title, fontsize=9, loc="left")
    ax.tick_params(labelsize=8)
