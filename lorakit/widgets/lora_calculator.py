"""LoraCalculator: pick a model, rank, targets and training settings; see what LoRA trains and what fits.

Every control funnels into ``_refresh()``, which recomputes the parameter count, the memory estimates
(``lorakit.sizing.scenarios``: full fine-tune in each optimizer-state convention, LoRA, QLoRA side by side;
memory per GPU for 1, 2, 4 and 8 GPUs; the fused head's saving) and the advice sentence -- pure arithmetic
on a cached architecture, a few milliseconds even for a 70B model -- and redraws every view in the same
update: the bar chart is an SVG string in a stock ``HTML`` widget (``lorakit.viz.sizing``), about a
millisecond to build, so nothing is throttled and a click sends one state update per view that changed
(``hold_sync``). Bad input shows the API's ValueError in a message line and withdraws the results (they
would describe other settings); the widget keeps working.

r has a slider over powers of two (8 and 16 a hand's width apart on a short track) and a box for any value up
to what the chosen model and targets allow. With all-linear ticked, the layer boxes show the layers it adapts. Dropdowns show short names, the long ones in their tooltips. Options and defaults are
TrainConfig's (FIELD_CHOICES, DEFAULTS): the calculator first sizes the run the trainer would make.

Layout: the controls and the results (trainable count, advice, chart) side by side where the notebook is wide
enough, one above the other where it is not; the tables follow, each scrolling sideways in its own box with
its first column fixed. Memory is in GiB everywhere, GPUs by the memory their driver reports.
"""

from __future__ import annotations

import html
from contextlib import ExitStack
from typing import Any

import ipywidgets as widgets

from lorakit.choices import OPTIMIZERS, PRECISIONS
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
from lorakit.sizing.lora_count import ALL_LINEAR, select_targets, smallest_adapted_dimension
from lorakit.sizing.memory import MemoryEstimate
from lorakit.sizing.scenarios import COMPONENT_LABELS, fused_head_saving, per_gpu, scenarios
from lorakit.training.config import BOUNDS, DEFAULTS, FIELD_ALIASES, FIELD_CHOICES
from lorakit.viz.sizing import memory_chart_svg
from lorakit.widgets.config_form import CHOICES, short_label
from lorakit.widgets.rank_control import RankControl
from lorakit.widgets.sizing_views import (
    PEAK,
    VIEWS,
    comparison_html,
    gib,
    module_table_html,
    per_gpu_html,
    stale,
)

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


CHART_NOTE = ("GiB = 2<sup>30</sup> bytes. A line is the memory a GPU's driver reports, a little less than the "
              "GB on its box (a T4 16 GB reports 15.0 GiB); solid: the GPU chosen above.")
NO_TARGETS = "target modules: tick at least one layer, or all-linear; LoRA needs a layer to adapt"


def _gpu_options() -> list[tuple[str, str]]:
    """Catalogue GPUs labelled with the memory the chart uses (GiB the driver reports)."""
    return [(f"{name} \u00b7 {gpu.memory_gib:.1f} GiB", name) for name, gpu in GPUS.items()] + [(MY_GPU, MY_GPU)]


def _lines(text: str) -> str:
    """HTML text at the page's own line height (an HTML widget gives every line a control's 28 px)."""
    return f"<div style='line-height:1.45;padding:3px 0'>{text}</div>"


def _options(table: dict[str, Any], field: str) -> tuple[list[tuple[str, str]], str]:
    """(short label, name) options of a schema field (FIELD_CHOICES), and a tooltip with every long label."""
    names = FIELD_CHOICES[field]
    return [(short_label(table[n].label), n) for n in names], "; ".join(table[n].label for n in names)




class LoraCalculator(widgets.VBox):
    """Size a LoRA / QLoRA run: parameters per module, memory by component, which GPU it fits."""

    def __init__(self, model: str = "SmolLM2-135M", r: int = 8, gpu: str = "T4 16 GB") -> None:
        self.preset_dropdown = widgets.Dropdown(options=list(PRESETS), value=model if model in PRESETS else None,
                                                description="model", style=_STYLE, layout=_wide())
        self.config_path_text = widgets.Text(value="" if model in PRESETS else str(model), description="or config",
                                             placeholder="config.json path", continuous_update=False,
                                             style=_STYLE, layout=_wide())
        # max: the config's own bound for now; _sync_r_bound() lowers it to what the model and targets allow
        self.rank = RankControl(r, BOUNDS["r"][1], style=_STYLE)
        self.r_note = _html("lorakit-r-note")
        self.alpha_text = widgets.FloatText(value=16.0, description="lora_alpha", style={"description_width": "initial"},
                                            layout=widgets.Layout(width="9em", min_width="9em"))
        self.all_linear_checkbox = widgets.Checkbox(value=True, description=ALL_LINEAR, indent=False)
        self.target_checkboxes: dict[str, widgets.Checkbox] = {}
        self.targets_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        options, tip = _options(PRECISIONS, "precision")
        self.precision_dropdown = widgets.Dropdown(options=options, value=DEFAULTS["precision"], description="precision",
                                                   tooltip=tip, style=_STYLE, layout=_wide())
        options, tip = _options(QUANTIZATIONS, "quantization")
        self.quantization_dropdown = widgets.Dropdown(options=options, value=DEFAULTS["quantization"], description="base",
                                                      tooltip=tip, style=_STYLE, layout=_wide())
        self.double_quant_checkbox = widgets.Checkbox(value=DEFAULTS[FIELD_ALIASES["double_quant"]], indent=False,
                                                      description="double quant", layout=_wide())
        options, tip = _options(OPTIMIZERS, "optimizer")
        self.optimizer_dropdown = widgets.Dropdown(options=options, value=DEFAULTS["optimizer"], description="optimizer",
                                                   tooltip=tip, style=_STYLE,  # two cells: "paged AdamW 8-bit"
                                                   # (grid_area: ipywidgets clears grid-column with grid-area)
                                                   layout=widgets.Layout(width="auto", grid_area="auto / span 2"))
        boxed = {"style": _STYLE, "layout": _wide()}
        self.batch_text = widgets.IntText(value=DEFAULTS["batch_size"], description="batch", **boxed)
        self.seq_text = widgets.IntText(value=DEFAULTS["max_seq_length"], description="seq len", **boxed)
        self.checkpointing_dropdown = widgets.Dropdown(options=CHOICES["gradient_checkpointing"], description="checkpoint",
                                                       value=DEFAULTS["gradient_checkpointing"], **boxed)
        self.loss_kernel_dropdown = widgets.Dropdown(options=CHOICES["loss_kernel"], value=DEFAULTS["loss_kernel"],
                                                     description="loss kernel", **boxed)
        self.distributed_dropdown = widgets.Dropdown(options=CHOICES["distributed"], value=DEFAULTS["distributed"],
                                                     description="multi-GPU", **boxed)
        self.gpu_dropdown = widgets.Dropdown(options=_gpu_options(), value=gpu, description="GPU", style=_STYLE,
                                             layout=widgets.Layout(width="auto", flex="2 1 0%", min_width="0"))
        self.gpu_gb_text = widgets.FloatText(value=12.0, description="my GiB", disabled=gpu != MY_GPU,
                                             style=_STYLE, layout=widgets.Layout(width="auto", flex="1 1 0%", min_width="0"))
        self.trainable_label = _html("lorakit-trainable")
        self.error_label = _html("lorakit-error")
        self.advice_label = _html("lorakit-advice")
        self.module_table = _html("lorakit-modules")
        self.comparison_table = _html("lorakit-comparison")
        self.breakdown_toggle = widgets.ToggleButtons(options=VIEWS, value=PEAK, style={"button_width": "auto"},
                                                      tooltips=["what a step holds at its peak moment",
                                                                "every component a step holds at some moment"])
        self.breakdown_toggle.add_class("lorakit-breakdown")
        self.kernel_label = _html("lorakit-kernel")
        self.fused_label = _html("lorakit-fused")
        self.per_gpu_table = _html("lorakit-per-gpu")
        self.chart = _html("lorakit-chart")  # an SVG: as wide as the column, at most its own width
        self.chart_note = widgets.HTML(f"<div style='line-height:1.35'><small>{CHART_NOTE}</small></div>")
        self.count = None  # the last good LoraCount
        self.estimates: dict[str, MemoryEstimate] = {}  # the last good scenarios
        self.per_gpu: dict[int, MemoryEstimate] = {}  # the last good memory per GPU (1, 2, 4, 8 GPUs)
        self.advice = None  # the last good FitAdvice
        self.as_set: str | None = None  # the run (a key of estimates) that the settings describe
        self._quiet = False  # True while the widget adjusts a control itself
        self._own_ticks: dict[str, bool] = {}  # the layer boxes as the person ticked them (all-linear shows its own)
        super().__init__(self._layout())
        self.add_class("lorakit-lora-calculator")
        self._wire()
        self._rebuild_targets()
        self._refresh()

    def _layout(self) -> list[widgets.Widget]:
        grid = widgets.Layout(grid_template_columns="repeat(auto-fill, minmax(15em, 1fr))", grid_gap="2px 12px")
        targets = widgets.HBox([widgets.HTML("target modules:", layout=widgets.Layout(margin="0 8px 0 0")),
                                self.all_linear_checkbox, self.targets_box], layout=widgets.Layout(flex_flow="row wrap"))
        settings = widgets.GridBox([
            self.precision_dropdown, self.quantization_dropdown, self.optimizer_dropdown,
            self.double_quant_checkbox, self.batch_text, self.seq_text, self.checkpointing_dropdown,
            self.loss_kernel_dropdown, self.distributed_dropdown], layout=grid)
        gpu_row = widgets.HBox([self.gpu_dropdown, self.gpu_gb_text])  # GPU names are long: a row of their own
        controls = widgets.VBox([
            widgets.GridBox([self.preset_dropdown, self.config_path_text], layout=grid),
            # r's slider takes what lora_alpha leaves of the row: a track long enough to drag on a narrow page
            widgets.VBox([widgets.HBox([self.rank, self.alpha_text]), self.r_note]),
            targets, settings, gpu_row, self.error_label,
        ], layout=widgets.Layout(flex="1 1 28em", min_width="0", max_width="40em", margin="0 16px 0 0"))
        controls.add_class("lorakit-controls")
        results = widgets.VBox([self.trainable_label, self.advice_label, self.chart, self.chart_note],
                               layout=widgets.Layout(flex="1 1 28em", min_width="0"))
        results.add_class("lorakit-results")
        # side by side where the notebook is wide enough, one above the other where it is not
        top = widgets.HBox([controls, results], layout=widgets.Layout(flex_flow="row wrap"))
        # below the controls and the chart, so that both fit on one screen: the kernel, the fused head, the tables
        return [top, self.kernel_label, self.fused_label, self.breakdown_toggle, self.comparison_table,
                self.per_gpu_table, self.module_table]

    def _wire(self) -> None:
        self.preset_dropdown.observe(self._on_preset_change, names="value")
        self.config_path_text.observe(self._on_config_path_change, names="value")
        self.all_linear_checkbox.observe(self._on_targets_change, names="value")
        self.gpu_dropdown.observe(self._on_gpu_change, names="value")
        self.breakdown_toggle.observe(self._on_breakdown_toggle_change, names="value")
        for control in (self.rank, self.alpha_text, self.precision_dropdown, self.quantization_dropdown,
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
        if self._quiet:
            return
        if change["owner"] is self.all_linear_checkbox:
            self._show_targets()
        else:
            self._own_ticks[change["owner"].description] = change["new"]
        self._refresh()

    def _on_breakdown_toggle_change(self, change: dict) -> None:
        if self.estimates and not self.error_label.value:
            self.comparison_table.value = comparison_html(self.estimates, self.gpu, change["new"])

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
        return dict(r=self.rank.value, lora_alpha=self.alpha_text.value, target_modules=self.target_modules,
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
        self._own_ticks = {n: self._own_ticks.get(n, n in ("q_proj", "v_proj", "c_attn", "qkv_proj")) for n in names}
        self.target_checkboxes = {n: widgets.Checkbox(description=n, indent=False, layout=widgets.Layout(width="auto"))
                                  for n in names}
        for box in self.target_checkboxes.values():
            box.observe(self._on_targets_change, names="value")
        self.targets_box.children = tuple(self.target_checkboxes.values())
        self._show_targets()

    def _show_targets(self) -> None:
        """With all-linear: the layers it adapts ticked and greyed (the head is not one); else the person's ticks."""
        covered: set[str] = set()
        if self.all_linear_checkbox.value:
            try:
                covered = {layer.suffix for layer in select_targets(describe_architecture(self.model_source), ALL_LINEAR)}
            except ValueError:
                pass  # a model that cannot be read: _refresh() shows why
        self._quiet = True
        try:
            for name, box in self.target_checkboxes.items():
                with box.hold_sync():
                    box.disabled = self.all_linear_checkbox.value
                    box.value = name in covered if box.disabled else self._own_ticks[name]
        finally:
            self._quiet = False

    def _refresh(self) -> None:
        """Recompute everything from the controls and show it in one update per view; on bad input show the
        message and withdraw the results."""
        if self._quiet:
            return
        # held in this order, sent in the reverse one: the count, the advice and the chart before the tables
        views = (self.error_label, self.module_table, self.per_gpu_table, self.comparison_table, self.fused_label,
                 self.kernel_label, self.r_note, self.chart.layout, self.chart, self.advice_label,
                 self.trainable_label, self.rank.text, self.rank.slider)
        with ExitStack() as held:
            for view in views:
                held.enter_context(view.hold_sync())
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
        self.comparison_table.value = stale(self.comparison_table.value)
        self.module_table.value = stale(self.module_table.value)
        self.per_gpu_table.value = stale(self.per_gpu_table.value)
        self.kernel_label.value = self.fused_label.value = ""
        self.chart.layout.visibility = "hidden"  # keeps its place: the page does not jump

    def _sync_r_bound(self) -> None:
        """r's max: the largest rank the chosen model and targets allow (the smallest adapted width)."""
        targets = self.target_modules
        if not targets:
            return
        bound = smallest_adapted_dimension(describe_architecture(self.model_source), targets)
        if self.rank.max == bound:
            return
        wanted = self.rank.value
        self._quiet = True  # lowering max may lower the value: one refresh (this one) covers both
        try:
            self.rank.max = bound
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
        self.kernel_label.value = _lines(f"attention: {html.escape(current.attention_kernel)} "
                                         f"({html.escape(current.attention_reason)}); peak at the "
                                         f"{html.escape(current.peak_phase)}; base linear layers: "
                                         f"{html.escape(QUANTIZATIONS[settings['quantization']].stores)}")
        self.fused_label.value = _lines(f"fused head: peak {gib(fused.total_bytes)} GiB instead of "
                                        f"{gib(plain.total_bytes)} GiB with the plain head "
                                        f"(logits + loss {gib(fused.logits_bytes)} vs {gib(plain.logits_bytes)} GiB)")
        self.per_gpu_table.value = per_gpu_html(devices, self.distributed_dropdown.value, gpu)
        self.trainable_label.value = _lines(
            f"<b>trainable {count.trainable_params:,}</b> of {count.total_params:,} parameters "
            f"({count.trainable_percent:.3f}%), r={count.r}, {sum(m.count for m in count.modules)} adapted matrices"
        )
        verdict = gpu.verdict(current.total_bytes, settings["precision"])
        self.advice_label.value = _lines(f"{html.escape(advice.sentence)}<br>As set: {html.escape(verdict)}")
        self.module_table.value = module_table_html(count)
        self.comparison_table.value = comparison_html(columns, gpu, self.breakdown_toggle.value)
        # the run these settings describe: the column whose settings are the current ones
        self.as_set = next((name for name, e in columns.items() if e.setup == current.setup), None)
        self.chart.value = self._chart_svg()

    def _chart_svg(self) -> str:
        lines = [(g.name, g.memory_bytes) for g in GPUS.values()]
        gpu = self.gpu
        if gpu.name not in GPUS:
            lines.append((gpu.name, gpu.memory_bytes))
        bars = {name: e.components() for name, e in self.estimates.items()}
        return memory_chart_svg(bars, lines, highlight=gpu.name, as_set=self.as_set, legend=COMPONENT_LABELS)
