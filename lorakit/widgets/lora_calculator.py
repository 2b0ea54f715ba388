"""LoraCalculator: pick a model, rank, targets and training settings; see what LoRA trains and what fits.

Every control funnels into ``_refresh()``, which recomputes the parameter count, the memory estimates
(``lorakit.sizing.scenarios``: full fine-tune in each optimizer-state convention, LoRA, QLoRA side by side;
memory per GPU for 1, 2, 4 and 8 GPUs; the fused head's saving) and the advice sentence -- pure arithmetic
on a cached architecture, a few milliseconds even for a 70B model. The bar chart (matplotlib -> PNG in an
``ipywidgets.Image``, updated in place) costs ~0.1 s, so its redraw is throttled and deferred. Bad input
shows the API's ValueError in a message line and withdraws the results (they would describe other
settings); the widget keeps working. The r slider goes as high as the chosen model and targets allow.

Layout: the controls and the results (trainable count, advice, chart) side by side where the notebook is wide
enough, one above the other where it is not; the tables follow. Memory is in GiB everywhere, GPUs by the
memory their driver reports (see ``lorakit.viz.sizing``).
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from lorakit.quantization import QUANTIZATIONS
from lorakit.sizing import (
    GPUS,
    PRESETS,
    count_lora_params,
    custom_gpu,
    describe_architecture,
    estimate_memory,
)
from lorakit.sizing.advice import suggest_fit
from lorakit.sizing.gpus import GIB
from lorakit.sizing.lora_count import ALL_LINEAR, smallest_adapted_dimension
from lorakit.sizing.memory import MemoryEstimate
from lorakit.sizing.scenarios import COMPONENT_LABELS, fused_head_saving, per_gpu, scenarios
from lorakit.training.config import BOUNDS, DEFAULTS, FIELD_ALIASES
from lorakit.viz.sizing import memory_chart_png
from lorakit.widgets.config_form import CHOICES
from lorakit.widgets.runtime import Throttle

__all__ = ["LoraCalculator"]

MY_GPU = "my GPU"
_STYLE = {"description_width": "5.5em"}


def _wide() -> widgets.Layout:
    """Fill the grid cell: a fixed-width control would spill into its neighbour on a narrow page."""
    return widgets.Layout(width="auto")


def _html(css: str) -> widgets.HTML:
    label = widgets.HTML()
    label.add_class(css)
    return label


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


# Notebook CSS pads table cells generously and lets them wrap: keep rows compact and numbers whole.
_CELL = "padding:1px 8px;line-height:1.35;white-space:nowrap"
_NUM = f"{_CELL};text-align:right;font-variant-numeric:tabular-nums"  # numbers line up on their last digit
_TEXT = f"{_CELL};text-align:left"
CHART_NOTE = ("GiB = 2<sup>30</sup> bytes. A line is the memory a GPU's driver reports, a little less than the "
              "GB on its box (a T4 16 GB reports 15.0 GiB); solid: the GPU chosen above.")
NO_TARGETS = "target modules: tick at least one layer, or all-linear; LoRA needs a layer to adapt"


def _row(cells: list[str], numeric_from: int = 1, tag: str = "td") -> str:
    """A table row whose cells from ``numeric_from`` on are right-aligned numbers."""
    return "<tr>" + "".join(
        f"<{tag} style='{_NUM if i >= numeric_from else _TEXT}'>{c}</{tag}>" for i, c in enumerate(cells)
    ) + "</tr>"


def module_table_html(count: Any) -> str:
    """Per-module-type table: shape, how many, LoRA r*(d_in+d_out) vs the full d_out*d_in update."""
    head = _row(["module", "d_out x d_in", "matrices", "LoRA each", "full update each", "LoRA total",
                 "LoRA / full"], tag="th")
    rows = "".join(_row([
        html.escape(m.name), f"{m.out_features:,} x {m.in_features:,}", str(m.count), f"{m.lora_params_each:,}",
        f"{m.full_update_params_each:,}", f"{m.lora_params:,}",
        f"{100 * m.lora_params_each / m.full_update_params_each:.2f}%"]) for m in count.modules)
    return _table(head + rows)


def _table(rows: str) -> str:
    """A compact table that scrolls sideways on a narrow page instead of breaking its numbers."""
    return (f"<div style='overflow-x:auto'><table class='lorakit-table' style='border-collapse:collapse'>{rows}"
            "</table></div>")


def comparison_html(scenarios: dict[str, MemoryEstimate], gpu: Any) -> str:
    """Components (GiB) held at each scenario's peak side by side, with trainable parameters and the GPU verdict."""
    names = list(scenarios)
    head = _row(["GiB", *(html.escape(n) for n in names)], tag="th")
    comps = next(iter(scenarios.values())).components()
    rows = "".join(_row([COMPONENT_LABELS.get(c, c), *(_gib(scenarios[n].components()[c]) for n in names)])
                   for c in comps)
    rows += _row(["<b>peak</b>", *(f"<b>{_gib(scenarios[n].total_bytes)}</b>" for n in names)])
    rows += _row(["peak at", *(html.escape(scenarios[n].peak_phase) for n in names)], numeric_from=99)
    rows += _row(["attention kernel", *(html.escape(scenarios[n].attention_kernel) for n in names)], numeric_from=99)
    rows += _row(["trainable", *(f"{scenarios[n].trainable_params:,}" for n in names)])
    rows += _row([html.escape(gpu.name), *("fits" if gpu.fits(scenarios[n].total_bytes) else "too big"
                                           for n in names)])
    return _table(head + rows)


def _stale(table: str) -> str:
    """A table greyed out: it shows the last valid settings, not the current ones."""
    if not table or "lorakit-stale" in table:
        return table
    return f"<div class='lorakit-stale' style='opacity:0.35' title='last valid settings'>{table}</div>"


def _gpu_options() -> list[tuple[str, str]]:
    """Catalogue GPUs labelled with the memory the chart uses (GiB the driver reports)."""
    return [(f"{name} \u00b7 {gpu.memory_gib:.1f} GiB", name) for name, gpu in GPUS.items()] + [(MY_GPU, MY_GPU)]


def per_gpu_html(per_device: dict[int, MemoryEstimate], strategy: str, gpu: Any) -> str:
    """Peak per GPU (GiB) for 1, 2, 4 and 8 GPUs with one strategy, and whether each fits the chosen GPU."""
    head = _row([f"GPUs ({html.escape(strategy)})", "per GPU (GiB)", html.escape(gpu.name)], numeric_from=0, tag="th")
    rows = "".join(_row([str(n), _gib(e.total_bytes), "fits" if gpu.fits(e.total_bytes) else "too big"],
                        numeric_from=0) for n, e in per_device.items())
    return _table(head + rows)


class LoraCalculator(widgets.VBox):
    """Size a LoRA / QLoRA run: parameters per module, memory by component, which GPU it fits."""

    def __init__(self, model: str = "SmolLM2-135M", r: int = DEFAULTS["r"], gpu: str = "T4 16 GB",
                 redraw_interval_s: float = 0.25) -> None:
        self.preset_dropdown = widgets.Dropdown(options=list(PRESETS), value=model if model in PRESETS else None,
                                                description="model", style=_STYLE, layout=_wide())
        self.config_path_text = widgets.Text(value="" if model in PRESETS else str(model), description="or config",
                                             placeholder="path to a config.json", continuous_update=False,
                                             style=_STYLE, layout=_wide())
        # max: the config's own bound for now; _sync_r_bound() lowers it to what the model and targets allow
        self.r_slider = widgets.IntSlider(value=r, min=1, max=BOUNDS["r"][1], description="r",
                                          continuous_update=False, style=_STYLE,
                                          layout=widgets.Layout(width="auto", flex="2 1 0%", min_width="0"))
        self.r_slider.add_class("lorakit-r")
        self.r_note = _html("lorakit-r-note")
        self.alpha_text = widgets.FloatText(value=DEFAULTS["lora_alpha"], description="lora_alpha", style=_STYLE,
                                            layout=widgets.Layout(width="auto", flex="1 1 0%", min_width="0"))
        self.all_linear_checkbox = widgets.Checkbox(value=True, description=ALL_LINEAR, indent=False)
        self.target_checkboxes: dict[str, widgets.Checkbox] = {}
        self.targets_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        # options and defaults: TrainConfig's (the planner's default run is the trainer's)
        def dropdown(field: str, description: str) -> widgets.Dropdown:
            return widgets.Dropdown(options=CHOICES[field], value=DEFAULTS[field], description=description,
                                    style=_STYLE, layout=_wide())

        self.precision_dropdown = dropdown("precision", "precision")
        self.quantization_dropdown = dropdown("quantization", "base")
        self.double_quant_checkbox = widgets.Checkbox(value=DEFAULTS[FIELD_ALIASES["double_quant"]],
                                                      description="double quant", indent=False, layout=_wide())
        self.optimizer_dropdown = dropdown("optimizer", "optimizer")
        self.batch_text = widgets.IntText(value=DEFAULTS["batch_size"], description="batch", style=_STYLE,
                                          layout=_wide())
        self.seq_text = widgets.IntText(value=DEFAULTS["max_seq_length"], description="seq len", style=_STYLE,
                                        layout=_wide())
        self.checkpointing_dropdown = dropdown("gradient_checkpointing", "checkpoint")
        self.loss_kernel_dropdown = dropdown("loss_kernel", "loss kernel")
        self.distributed_dropdown = dropdown("distributed", "multi-GPU")
        self.gpu_dropdown = widgets.Dropdown(options=_gpu_options(), value=gpu, description="GPU", style=_STYLE,
                                             layout=widgets.Layout(width="auto", flex="2 1 0%", min_width="0"))
        self.gpu_gb_text = widgets.FloatText(value=12.0, description="my GiB", disabled=gpu != MY_GPU,
                                             style=_STYLE, layout=widgets.Layout(width="auto", flex="1 1 0%", min_width="0"))
        self.trainable_label = _html("lorakit-trainable")
        self.error_label = _html("lorakit-error")
        self.advice_label = _html("lorakit-advice")
        self.module_table = _html("lorakit-modules")
        self.comparison_table = _html("lorakit-comparison")
        self.kernel_label = _html("lorakit-kernel")
        self.fused_label = _html("lorakit-fused")
        self.per_gpu_table = _html("lorakit-per-gpu")
        self.chart = widgets.Image(format="png", layout=widgets.Layout(width="100%", max_width="600px"))
        self.chart.add_class("lorakit-chart")
        self.chart_note = widgets.HTML(f"<div style='line-height:1.35'><small>{CHART_NOTE}</small></div>")
        self.count = None  # the last good LoraCount
        self.estimates: dict[str, MemoryEstimate] = {}  # the last good scenarios
        self.per_gpu: dict[int, MemoryEstimate] = {}  # the last good memory per GPU (1, 2, 4, 8 GPUs)
        self.advice = None  # the last good FitAdvice
        self._chart_throttle = Throttle(self._draw_chart, redraw_interval_s)
        self._quiet = False  # True while the widget adjusts a control itself
        super().__init__(self._layout())
        self.add_class("lorakit-lora-calculator")
        self._wire()
        self._rebuild_targets()
        self._refresh()

    def _layout(self) -> list[widgets.Widget]:
        grid = widgets.Layout(grid_template_columns="repeat(auto-fill, minmax(15em, 1fr))", grid_gap="2px 12px")
        targets = widgets.VBox([widgets.HTML("target modules:"), widgets.HBox(
            [self.all_linear_checkbox, self.targets_box], layout=widgets.Layout(flex_flow="row wrap"))])
        settings = widgets.GridBox([
            self.precision_dropdown, self.quantization_dropdown, self.optimizer_dropdown,
            self.double_quant_checkbox, self.batch_text, self.seq_text, self.checkpointing_dropdown,
            self.loss_kernel_dropdown, self.distributed_dropdown], layout=grid)
        gpu_row = widgets.HBox([self.gpu_dropdown, self.gpu_gb_text])  # GPU names are long: a row of their own
        controls = widgets.VBox([
            widgets.GridBox([self.preset_dropdown, self.config_path_text], layout=grid),
            # the slider gets two thirds of the row: a track long enough to drag on a narrow page
            widgets.VBox([widgets.HBox([self.r_slider, self.alpha_text]), self.r_note]),
            targets, settings, gpu_row, self.error_label,
        ], layout=widgets.Layout(flex="1 1 28em", min_width="0", max_width="40em", margin="0 16px 0 0"))
        controls.add_class("lorakit-controls")
        results = widgets.VBox([self.trainable_label, self.advice_label, self.chart, self.chart_note],
                               layout=widgets.Layout(flex="1 1 28em", min_width="0"))
        results.add_class("lorakit-results")
        # side by side where the notebook is wide enough, one above the other where it is not
        top = widgets.HBox([controls, results], layout=widgets.Layout(flex_flow="row wrap"))
        # below the controls and the chart, so that both fit on one screen: the kernel, the fused head, the tables
        return [top, self.kernel_label, self.fused_label, self.comparison_table, self.per_gpu_table, self.module_table]

    def _wire(self) -> None:
        self.preset_dropdown.observe(self._on_preset_change, names="value")
        self.config_path_text.observe(self._on_config_path_change, names="value")
        self.all_linear_checkbox.observe(self._on_targets_change, names="value")
        self.gpu_dropdown.observe(self._on_gpu_change, names="value")
        for control in (self.r_slider, self.alpha_text, self.precision_dropdown, self.quantization_dropdown,
                        self.double_quant_checkbox, self.optimizer_dropdown, self.batch_text, self.seq_text,
                        self.checkpointing_dropdown, self.gpu_gb_text, self.loss_kernel_dropdown,
                        self.distributed_dropdown):
            control.observe(self._on_setting_change, names="value")

    # --- handlers: each funnels into _refresh() ---------------------------------------------------
    def _on_preset_change(self, change: dict) -> None:
        if self.config_path_text.value:
            self.config_path_text.value = ""  # a chosen preset replaces a typed path; that handler refreshes
            return
        self._rebuild_targets()
        self._refresh()

    def _on_config_path_change(self, change: dict) -> None:
        self._rebuild_targets()
        self._refresh()

    def _on_targets_change(self, change: dict) -> None:
        for box in self.target_checkboxes.values():
            box.disabled = self.all_linear_checkbox.value
        self._refresh()

    def _on_gpu_change(self, change: dict) -> None:
        self.gpu_gb_text.disabled = change["new"] != MY_GPU
        self._refresh()

    def _on_setting_change(self, change: dict) -> None:
        self._refresh()

    # --- state -> numbers -> views ------------------------------------------------------------------
    @property
    def model_source(self) -> str | None:
        """The config path when one is typed, else the preset name."""
        return self.config_path_text.value.strip() or self.preset_dropdown.value

    @property
    def target_modules(self) -> str | list[str]:
        """"all-linear" or the ticked layer names."""
        if self.all_linear_checkbox.value:
            return ALL_LINEAR
        return [name for name, box in self.target_checkboxes.items() if box.value]

    @property
    def gpu(self) -> Any:
        """The chosen catalogue GPU, or the custom one."""
        if self.gpu_dropdown.value == MY_GPU:
            return custom_gpu(self.gpu_gb_text.value)
        return GPUS[self.gpu_dropdown.value]

    def settings(self) -> dict[str, Any]:
        """The controls as keyword arguments of ``estimate_memory`` for one GPU (the attention kernel follows the
        GPU; the multi-GPU strategy goes to the per-GPU table only). Double quantization where it is offered."""
        gpu = GPUS.get(self.gpu_dropdown.value)
        offered = QUANTIZATIONS[self.quantization_dropdown.value].double_quant
        return dict(r=self.r_slider.value, lora_alpha=self.alpha_text.value, target_modules=self.target_modules,
                    precision=self.precision_dropdown.value,
                    quantization=self.quantization_dropdown.value,
                    double_quant=self.double_quant_checkbox.value and offered, optimizer=self.optimizer_dropdown.value,
                    batch_size=self.batch_text.value, max_seq_length=self.seq_text.value,
                    gradient_checkpointing=self.checkpointing_dropdown.value,
                    loss_kernel=self.loss_kernel_dropdown.value,
                    compute_capability=gpu.compute_capability if gpu else None)

    def _rebuild_targets(self) -> None:
        """One checkbox per linear layer name of the chosen architecture (kept when the names repeat)."""
        try:
            names = describe_architecture(self.model_source).linear_suffixes
        except ValueError:
            return  # _refresh() shows the message
        if tuple(self.target_checkboxes) == names:
            return
        old = {n: b.value for n, b in self.target_checkboxes.items()}
        self.target_checkboxes = {
            n: widgets.Checkbox(value=old.get(n, n in ("q_proj", "v_proj", "c_attn", "qkv_proj")), description=n,
                                indent=False, disabled=self.all_linear_checkbox.value,
                                layout=widgets.Layout(width="auto"))
            for n in names
        }
        for box in self.target_checkboxes.values():
            box.observe(self._on_targets_change, names="value")
        self.targets_box.children = tuple(self.target_checkboxes.values())

    def _refresh(self) -> None:
        """Recompute everything from the controls; on bad input show the message and withdraw the results."""
        if self._quiet:
            return
        try:
            self._sync_r_bound()
            if not self.target_modules:
                raise ValueError(NO_TARGETS)
            self._update(self.model_source, self.settings(), self.gpu)
        except ValueError as err:
            self._show_error(html.escape(str(err)))
            return
        except Exception as err:  # a callback's error is otherwise lost; show it and keep the widget alive
            self._show_error(f"unexpected {type(err).__name__}: {html.escape(str(err))}")
            return
        self.error_label.value = ""
        self.chart.layout.visibility = "visible"

    def _show_error(self, message: str) -> None:
        """The message, and no numbers that belong to other settings: verdict cleared, tables greyed."""
        self.error_label.value = f"<span style='color:#b00'>{message}</span>"
        self.trainable_label.value = "<span style='color:#777'>No results for these settings: see the message.</span>"
        self.advice_label.value = ""
        self.comparison_table.value = _stale(self.comparison_table.value)
        self.module_table.value = _stale(self.module_table.value)
        self.per_gpu_table.value = _stale(self.per_gpu_table.value)
        self.kernel_label.value = self.fused_label.value = ""
        self.chart.layout.visibility = "hidden"  # keeps its place: the page does not jump

    def _sync_r_bound(self) -> None:
        """The slider's max: the largest rank the chosen model and targets allow (the smallest adapted width)."""
        targets = self.target_modules
        if not targets:
            return
        bound = smallest_adapted_dimension(describe_architecture(self.model_source), targets)
        if self.r_slider.max == bound:
            return
        wanted = self.r_slider.value
        self._quiet = True  # lowering max may lower the value: one refresh (this one) covers both
        try:
            self.r_slider.max = bound
        finally:
            self._quiet = False
        note = f"r &le; {bound}: the narrowest adapted layer is {bound} wide"
        if wanted > bound:
            note += f"; r lowered from {wanted}"
        self.r_note.value = f"<div style='line-height:1.35'><small>{note}</small></div>"

    def _update(self, source: Any, settings: dict[str, Any], gpu: Any) -> None:
        lora_keys = ("r", "target_modules")
        count = count_lora_params(source, **{k: settings[k] for k in lora_keys},
                                  quantization=settings["quantization"])
        current = estimate_memory(source, **settings)
        columns = scenarios(source, **settings)
        devices = per_gpu(source, distributed=self.distributed_dropdown.value, **settings)
        plain, fused = fused_head_saving(source, **settings)
        advice = suggest_fit(source, gpu, **settings)
        self.count, self.estimates, self.per_gpu, self.advice = count, columns, devices, advice
        stores = QUANTIZATIONS[settings["quantization"]].stores  # what the base's linear weights hold
        self.kernel_label.value = (f"attention: {html.escape(current.attention_kernel)} "
                                   f"({html.escape(current.attention_reason)}); peak at the "
                                   f"{html.escape(current.peak_phase)}; base linear layers: {html.escape(stores)}")
        self.fused_label.value = (f"fused head: peak {_gib(fused.total_bytes)} GiB instead of "
                                  f"{_gib(plain.total_bytes)} GiB with the plain head "
                                  f"(logits + loss {_gib(fused.logits_bytes)} vs {_gib(plain.logits_bytes)} GiB)")
        self.per_gpu_table.value = per_gpu_html(devices, self.distributed_dropdown.value, gpu)
        self.trainable_label.value = (
            f"<b>trainable {count.trainable_params:,}</b> of {count.total_params:,} parameters "
            f"({count.trainable_percent:.3f}%), r={count.r}, {sum(m.count for m in count.modules)} adapted matrices"
        )
        verdict = gpu.verdict(current.total_bytes, settings["precision"])
        self.advice_label.value = f"{html.escape(advice.sentence)}<br>As set: {html.escape(verdict)}"
        self.module_table.value = module_table_html(count)
        self.comparison_table.value = comparison_html(columns, gpu)
        self._chart_throttle.request()

    def _draw_chart(self) -> None:
        lines = [(g.name, g.memory_bytes) for g in GPUS.values()]
        gpu = self.gpu if self.gpu_dropdown.value != MY_GPU or self.gpu_gb_text.value > 0 else None
        if gpu is not None and gpu.name not in GPUS:
            lines.append((gpu.name, gpu.memory_bytes))
        bars = {name: e.components() for name, e in self.estimates.items()}
        self.chart.value = memory_chart_png(bars, lines, highlight=gpu.name if gpu else None)

    def redraw_now(self) -> None:
        """Draw the pending chart immediately (tests, static notebook output)."""
        self._chart_throttle.flush()

