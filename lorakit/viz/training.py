"""Training plots: loss, learning rate, throughput and memory over steps; run-comparison bars.

Every function draws on a matplotlib ``Axes`` it is given, from plain sequences. Figures are built with
the object-oriented API (``matplotlib.figure.Figure`` + Agg canvas), never pyplot, so they can be drawn
from a training thread and are not auto-shown twice by the inline backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lorakit.units import GIB, MIB
from lorakit.viz.png import figure_to_png

__all__ = [
    "make_figure",
    "make_dashboard_figure",
    "figure_to_png",
    "clear_data",
    "memory_unit",
    "draw_loss",
    "draw_learning_rate",
    "draw_throughput",
    "draw_memory",
    "draw_dashboard",
    "draw_dashboard_records",
    "rank_memory_series",
    "draw_loss_curves",
    "draw_bars",
]

# memory series drawn by draw_dashboard: record key -> legend label
MEMORY_SERIES = {
    "mem_allocated_bytes": "GPU allocated",
    "mem_reserved_bytes": "GPU reserved",
    "mem_peak_bytes": "GPU peak",
    "rss_bytes": "process RSS",
}


def make_figure(nrows: int = 1, ncols: int = 3, *, width_in: float = 12.0, height_in: float = 3.6,
                dpi: int = 80) -> tuple[Figure, list[Axes]]:
    """A Figure with an Agg canvas and a flat list of nrows*ncols axes; size in inches, dpi in pixels/inch."""
    fig = Figure(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()


def make_dashboard_figure(*, width_in: float = 9.0, height_in: float = 5.4, dpi: int = 72) -> tuple[Figure, list[Axes]]:
    """The live 2x2 figure (loss, learning rate, tokens/s, memory) with fixed margins.

    Fixed margins instead of a layout engine: constrained layout doubles the cost of every redraw
    (measured ~160 ms vs ~75 ms per PNG on this project's 2-core CI machine), and every redraw takes CPU
    time from the training run it shows.
    """
    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2).ravel().tolist()
    fig.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.09, hspace=0.45, wspace=0.22)
    return fig, axes


def clear_data(ax: Axes) -> None:
    """Remove what the draw_* functions added (lines, texts, legend) but keep the axis and its ticks.

    ``ax.clear()`` rebuilds every tick object, about 40 % of a dashboard redraw; a live figure redrawn in
    place only needs its data artists replaced and autoscaling switched back on.
    """
    for artist in [*ax.lines, *ax.collections, *ax.texts, *ax.patches]:
        artist.remove()
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    ax.set_autoscale_on(True)
    ax.relim()


def memory_unit(max_bytes: float) -> tuple[str, float]:
    """The unit name and divisor that keep memory values readable: GiB from 1 GiB up, MiB below."""
    return ("GiB", float(GIB)) if max_bytes >= GIB else ("MiB", float(MIB))


def _pairs(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[list[float], list[float]]:
    """Drop points whose y is None (a value not measured on this device)."""
    kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    return [x for x, _ in kept], [float(y) for _, y in kept]


def _marker(xs: Sequence) -> str | None:
    """A lone point is drawn as a dot (a line through one point shows nothing)."""
    return "o" if len(xs) == 1 else None


def _from_zero(ax: Axes, values: Sequence[float]) -> None:
    """The y axis from zero to 5 % above the largest value: the first points alone would zoom onto a few
    hundredths of a loss, and a nearly constant series (a learning rate decaying over 100,000 steps) would lie
    on the frame's top edge, where matplotlib's margin (5 % of the data's own span) puts it."""
    top = max(values)
    if top > 0:
        ax.set_ylim(0, 1.05 * top)


def _placeholder(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.5")


def draw_loss(ax: Axes, steps: Sequence[float], losses: Sequence[float | None],
              eval_steps: Sequence[float] = (), eval_losses: Sequence[float | None] = (),
              *, label: str = "train") -> None:
    """Training loss per logged step (line) and evaluation loss (markers) on a shared step axis."""
    xs, ys = _pairs(steps, losses)
    if xs:
        ax.plot(xs, ys, label=f"{label} loss", color="C0", linewidth=1.2, marker=_marker(xs), markersize=4)
    exs, eys = _pairs(eval_steps, eval_losses)
    if exs:
        ax.plot(exs, eys, "o-", label="eval loss", color="C3", markersize=4, linewidth=1)
    if xs or exs:
        _from_zero(ax, ys + eys)
    else:
        _placeholder(ax, "waiting for the first logged step")
    ax.set_title("loss")
    ax.set_xlabel("step")
    if xs and exs:
        ax.legend(loc="upper right", fontsize="small")


def draw_learning_rate(ax: Axes, steps: Sequence[float], lrs: Sequence[float | None]) -> None:
    """Learning rate per logged step (warm-up and decay of the schedule)."""
    xs, ys = _pairs(steps, lrs)
    if xs:
        ax.plot(xs, ys, color="C2", linewidth=1.2, marker=_marker(xs), markersize=4)
        _from_zero(ax, ys)
        # no offset: a nearly constant LR would otherwise read "1e-9+1.9999e-4"
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useOffset=False)
    else:
        _placeholder(ax, "no learning rate logged yet")
    ax.set_title("learning rate")
    ax.set_xlabel("step")


def draw_throughput(ax: Axes, steps: Sequence[float], tokens_per_s: Sequence[float | None]) -> None:
    """Training throughput in tokens per second per logged step."""
    xs, ys = _pairs(steps, tokens_per_s)
    if xs:
        ax.plot(xs, ys, color="C1", linewidth=1.2, marker=_marker(xs), markersize=4)
        ax.set_ylim(bottom=0)
    else:
        _placeholder(ax, "no throughput logged yet")
    ax.set_title("tokens / s")
    ax.set_xlabel("step")


def draw_memory(ax: Axes, steps: Sequence[float], series: Mapping[str, Sequence[float | None]],
                predicted_peak_bytes: float | None = None) -> None:
    """Memory curves in bytes (label -> values per step), with the planner's predicted peak as a dashed line."""
    curves = {label: _pairs(steps, values) for label, values in series.items()}
    curves = {label: xy for label, xy in curves.items() if xy[0]}
    tops = [max(ys) for _, ys in curves.values()] + [predicted_peak_bytes or 0.0]
    unit, div = memory_unit(max(tops))
    for i, (label, (xs, ys)) in enumerate(curves.items()):
        ax.plot(xs, [y / div for y in ys], label=label, color=f"C{4 + i}", linewidth=1.2, marker=_marker(xs),
                markersize=4)
    if predicted_peak_bytes:
        ax.axhline(predicted_peak_bytes / div, color="k", linestyle="--", linewidth=1,
                   label=predicted_label(predicted_peak_bytes, series.get(MEMORY_SERIES["mem_peak_bytes"]), unit, div))
    if curves or predicted_peak_bytes:
        ax.set_ylim(0, max(tops) / div * 1.12)  # headroom so the predicted-peak line is not on the frame
        ax.legend(loc="lower right", fontsize="small")
    else:
        _placeholder(ax, "no memory measured yet")
    ax.set_title(f"memory ({unit})")
    ax.set_xlabel("step")


def predicted_label(predicted_bytes: float, peaks: Sequence[float | None] | None, unit: str, div: float) -> str:
    """The predicted peak's legend entry; with the GPU's measured peak so far (max_memory_allocated, the
    quantity the planner predicts), the prediction's error: 'predicted 7.30 GiB; measured 7.31 (-0.1 %)'."""
    measured = max((v for v in peaks or () if v is not None), default=None)
    if not measured:
        return "predicted peak"
    error = 100 * (predicted_bytes - measured) / measured
    return f"predicted {predicted_bytes / div:.2f} {unit}; measured {measured / div:.2f} ({error:+.1f} %)"


def draw_dashboard(axes: Sequence[Axes], train: Mapping[str, Sequence], evals: Mapping[str, Sequence],
                   predicted_peak_bytes: float | None = None) -> None:
    """The four live panels from column-wise histories (train: step, loss, learning_rate, ...; evals: step, eval_loss)."""
    loss_ax, lr_ax, speed_ax, mem_ax = axes
    steps = train.get("step", [])
    draw_loss(loss_ax, steps, train.get("loss", []), evals.get("step", []), evals.get("eval_loss", []))
    draw_learning_rate(lr_ax, steps, train.get("learning_rate", []))
    draw_throughput(speed_ax, steps, train.get("tokens_per_s", []))
    memory = rank_memory_series(train.get("memory_by_rank", []))
    if not memory:
        memory = {label: train[key] for key, label in MEMORY_SERIES.items() if any(
            v is not None for v in train.get(key, []))}
    draw_memory(mem_ax, steps, memory, predicted_peak_bytes)


TRAIN_KEYS = ("step", "loss", "learning_rate", "tokens_per_s", "mem_allocated_bytes", "mem_reserved_bytes",
              "mem_peak_bytes", "rss_bytes", "memory_by_rank")
EVAL_KEYS = ("step", "eval_loss")


def draw_dashboard_records(axes: Sequence[Axes], history: Sequence[Mapping], evals: Sequence[Mapping],
                           predicted_peak_bytes: float | None = None) -> None:
    """``draw_dashboard`` from a run's records as its sinks receive them (train and eval records, in order)."""
    draw_dashboard(axes, {key: [r.get(key) for r in history] for key in TRAIN_KEYS},
                   {key: [r.get(key) for r in evals] for key in EVAL_KEYS}, predicted_peak_bytes)


def rank_memory_series(by_rank: Sequence[Sequence[Mapping] | None]) -> dict[str, list]:
    """One memory curve per process of a multi-process run ("rank 1 GPU allocated" -> values per step).

    ``by_rank``: each logged step's ``memory_by_rank`` (None where absent). GPU allocated memory when it
    was measured, else the process RSS; {} for a one-process run.
    """
    if not any(by_rank):
        return {}
    ranks = max(len(m) for m in by_rank if m)
    measured = any(r.get("mem_allocated_bytes") is not None for m in by_rank if m for r in m)
    key = "mem_allocated_bytes" if measured else "rss_bytes"
    return {f"rank {i} {MEMORY_SERIES[key]}": [m[i].get(key) if m and i < len(m) else None for m in by_rank]
            for i in range(ranks)}


def draw_loss_curves(ax: Axes, curves: Mapping[str, tuple[Sequence[float], Sequence[float | None]]],
                     eval_points: Mapping[str, tuple[Sequence[float], Sequence[float | None]]] | None = None) -> None:
    """Several runs' training loss on one step axis (name -> (steps, losses)); eval loss as same-colour dots."""
    eval_points = eval_points or {}
    for i, (name, (steps, losses)) in enumerate(curves.items()):
        xs, ys = _pairs(steps, losses)
        ax.plot(xs, ys, color=f"C{i}", linewidth=1.2, label=name)
        exs, eys = _pairs(*eval_points.get(name, ((), ())))
        if exs:
            ax.plot(exs, eys, "o", color=f"C{i}", markersize=5, markeredgecolor="k")
    ax.set_title("training loss (dots: eval loss)" if any(v[0] for v in eval_points.values()) else "training loss")
    ax.set_xlabel("step")
    if curves:
        ax.legend(fontsize="small")


def draw_bars(ax: Axes, names: Sequence[str], values: Sequence[float | None], *, title: str,
              fmt: str = "{:.3g}") -> None:
    """One bar per run; a missing value (None) leaves a gap labelled 'n/a'."""
    heights = [0.0 if v is None else float(v) for v in values]
    bars = ax.bar(range(len(names)), heights, color=[f"C{i}" for i in range(len(names))])
    labels = ["n/a" if v is None else fmt.format(v) for v in values]
    ax.bar_label(bars, labels=labels, fontsize="small")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_title(title)
    ax.margins(y=0.15)
