"""LoraCalculator: pick a model, rank, targets and training settings; see what LoRA trains and what fits.

Every control funnels into ``_refresh()``, which recomputes the parameter count, the memory estimates
(``lorakit.sizing.scenarios``: full fine-tune in each optimizer-state convention, LoRA, QLoRA side by side;
memory per GPU for 1, 2, 4 and 8 GPUs; the fused head's saving) and the advice sentence -- pure arithmetic
on a cached architecture, a few milliseconds even for a 70B model. The bar chart (matplotlib -> PNG in an
``ipywidgets.Image``, updated in place) costs ~0.1 s, so its redraw is throttled and deferred. Bad input
shows the API's ValueError in a message line; the previous results stay and the widget keeps working.
"""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from lorakit.choices import DISTRIBUTED, LOSS_KERNELS, OPTIMIZERS, PRECISIONS, QUANTIZATIONS
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
from lorakit.sizing.lora_count import ALL_LINEAR
from lorakit.sizing.memory import MemoryEstimate
from lorakit.sizing.scenarios import COMPONENT_LABELS, fused_head_saving, per_gpu, scenarios
from lorakit.viz.sizing import memory_chart_png
from lorakit.widgets.format_views import Throttle

__all__ = ["LoraCalculator"]

MY_GPU = "my GPU"


def _html(css: str) -> widgets.HTML:
    label = widgets.HTML()
    label.add_class(css)
    return label


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.2f}"


def module_table_html(count: Any) -> str:
    """Per-module-type table: shape, how many, LoRA r*(d_in+d_out) vs the full d_out*d_in update."""
    rows = "".join(
        f"<tr><td>{html.escape(m.name)}</td><td>{m.out_features:,} x {m.in_features:,}</td><td>{m.count}</td>"
        f"<td>{m.lora_params_each:,}</td><td>{m.full_update_params_each:,}</td>"
        f"<td>{m.lora_params:,}</td><td>{100 * m.lora_params_each / m.full_update_params_each:.2f}%</td></tr>"
        for m in count.modules
    )
    head = ("<tr><th>module</th><th>d_out x d_in</th><th>matrices</th><th>LoRA each</th>"
            "<th>full update each</th><th>LoRA total</th><th>LoRA / full</th></tr>")
    return f"<table class='lorakit-table'>{head}{rows}</table>"


def comparison_html(scenarios: dict[str, MemoryEstimate], gpu: Any) -> str:
    """Components (GiB) held at each scenario's peak side by side, with trainable parameters and the GPU verdict."""
    names = list(scenarios)
    head = "<tr><th></th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    comps = next(iter(scenarios.values())).components()
    rows = "".join(
        f"<tr><td>{COMPONENT_LABELS.get(c, c)}</td>"
        + "".join(f"<td>{_gib(scenarios[n].components()[c])}</td>" for n in names) + "</tr>"
        for c in comps
    )
    rows += "<tr><td><b>peak (GiB)</b></td>" + "".join(
        f"<td><b>{_gib(scenarios[n].total_bytes)}</b></td>" for n in names) + "</tr>"
    rows += "<tr><td>peak at</td>" + "".join(
        f"<td>{html.escape(scenarios[n].peak_phase)}</td>" for n in names) + "</tr>"
    rows += "<tr><td>attention kernel</td>" + "".join(
        f"<td>{html.escape(scenarios[n].attention_kernel)}</td>" for n in names) + "</tr>"
    rows += "<tr><td>trainable</td>" + "".join(
        f"<td>{scenarios[n].trainable_params:,}</td>" for n in names) + "</tr>"
    rows += f"<tr><td>{html.escape(gpu.name)}</td>" + "".join(
        f"<td>{'fits' if gpu.fits(scenarios[n].total_bytes) else 'too big'}</td>" for n in names) + "</tr>"
    return f"<table class='lorakit-table'>{head}{rows}</table>"


def per_gpu_html(per_device: dict[int, MemoryEstimate], strategy: str, gpu: Any) -> str:
    """Peak per GPU (GiB) for 1, 2, 4 and 8 GPUs with one strategy, and whether each fits the chosen GPU."""
    head = f"<tr><th>GPUs ({html.escape(strategy)})</th><th>per GPU (GiB)</th><th>{html.escape(gpu.name)}</th></tr>"
    rows = "".join(
        f"<tr><td>{n}</td><td>{_gib(e.total_bytes)}</td><td>{'fits' if gpu.fits(e.total_bytes) else 'too big'}</td></tr>"
        for n, e in per_device.items()
    )
    return f"<table class='lorakit-table'>{head}{rows}</table>"


class LoraCalculator(widgets.VBox):
    """Size a LoRA / QLoRA run: parameters per module, memory by component, which GPU it fits."""

    def __init__(self, model: str = "SmolLM2-135M", r: int = 8, gpu: str = "T4 16 GB",
                 redraw_interval_s: float = 0.25) -> None:
        self.preset_dropdown = widgets.Dropdown(options=list(PRESETS), value=model if model in PRESETS else None,
                                                description="model")
        self.config_path_text = widgets.Text(value="" if model in PRESETS else str(model), description="or config",
                                             placeholder="path to a config.json", continuous_update=False)
        self.r_slider = widgets.IntSlider(value=r, min=1, max=256, description="r", continuous_update=False)
        self.r_slider.add_class("lorakit-r")
        self.alpha_text = widgets.FloatText(value=16.0, description="lora_alpha")
        self.all_linear_checkbox = widgets.Checkbox(value=True, description=ALL_LINEAR, indent=False)
        self.target_checkboxes: dict[str, widgets.Checkbox] = {}
        self.targets_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.precision_dropdown = widgets.Dropdown(options=[(p.label, n) for n, p in PRECISIONS.items()],
                                                   value="bf16", description="precision")
        self.quantization_dropdown = widgets.Dropdown(options=[(q.label, n) for n, q in QUANTIZATIONS.items()],
                                                      value="none", description="base")
        self.double_quant_checkbox = widgets.Checkbox(value=True, description="double quant", indent=False)
        self.optimizer_dropdown = widgets.Dropdown(options=[(o.label, n) for n, o in OPTIMIZERS.items()],
                                                   value="adamw", description="optimizer")
        self.batch_text = widgets.IntText(value=1, description="batch")
        self.seq_text = widgets.IntText(value=512, description="seq len")
        self.checkpointing_checkbox = widgets.Checkbox(value=False, description="gradient checkpointing",
                                                       indent=False)
        self.loss_kernel_dropdown = widgets.Dropdown(options=list(LOSS_KERNELS), value="plain",
                                                     description="loss kernel")
        self.distributed_dropdown = widgets.Dropdown(options=list(DISTRIBUTED), value="ddp",
                                                     description="multi-GPU")
        self.gpu_dropdown = widgets.Dropdown(options=[*GPUS, MY_GPU], value=gpu, description="GPU")
        self.gpu_gb_text = widgets.FloatText(value=12.0, description="my GB", disabled=gpu != MY_GPU)
        self.trainable_label = _html("lorakit-trainable")
        self.error_label = _html("lorakit-error")
        self.advice_label = _html("lorakit-advice")
        self.module_table = _html("lorakit-modules")
        self.comparison_table = _html("lorakit-comparison")
        self.kernel_label = _html("lorakit-kernel")
        self.fused_label = _html("lorakit-fused")
        self.per_gpu_table = _html("lorakit-per-gpu")
        self.chart = widgets.Image(format="png", layout=widgets.Layout(max_width="640px"))
        self.chart.add_class("lorakit-chart")
        self.count = None  # the last good LoraCount
        self.estimates: dict[str, MemoryEstimate] = {}  # the last good scenarios
        self.per_gpu: dict[int, MemoryEstimate] = {}  # the last good memory per GPU (1, 2, 4, 8 GPUs)
        self.advice = None  # the last good FitAdvice
        self._chart_throttle = Throttle(self._draw_chart, redraw_interval_s)
        super().__init__(self._layout())
        self.add_class("lorakit-lora-calculator")
        self._wire()
        self._rebuild_targets()
        self._refresh()

    def _layout(self) -> list[widgets.Widget]:
        model_row = widgets.HBox([self.preset_dropdown, self.config_path_text])
        lora_row = widgets.HBox([self.r_slider, self.alpha_text])
        targets = widgets.VBox([widgets.HTML("target modules:"), widgets.HBox([self.all_linear_checkbox,
                                                                              self.targets_box])])
        train_rows = [widgets.HBox([self.precision_dropdown, self.quantization_dropdown, self.double_quant_checkbox]),
                      widgets.HBox([self.optimizer_dropdown, self.batch_text, self.seq_text]),
                      widgets.HBox([self.checkpointing_checkbox, self.gpu_dropdown, self.gpu_gb_text]),
                      widgets.HBox([self.loss_kernel_dropdown, self.distributed_dropdown])]
        return [model_row, lora_row, targets, *train_rows, self.error_label, self.trainable_label,
                self.advice_label, self.kernel_label, self.fused_label, self.comparison_table, self.chart,
                self.per_gpu_table, self.module_table]

    def _wire(self) -> None:
        self.preset_dropdown.observe(self._on_preset_change, names="value")
        self.config_path_text.observe(self._on_config_path_change, names="value")
        self.all_linear_checkbox.observe(self._on_targets_change, names="value")
        self.gpu_dropdown.observe(self._on_gpu_change, names="value")
        for control in (self.r_slider, self.alpha_text, self.precision_dropdown, self.quantization_dropdown,
                        self.double_quant_checkbox, self.optimizer_dropdown, self.batch_text, self.seq_text,
                        self.checkpointing_checkbox, self.gpu_gb_text, self.loss_kernel_dropdown,
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
        """The controls as keyword arguments of ``estimate_memory`` (the attention kernel follows the GPU)."""
        gpu = GPUS.get(self.gpu_dropdown.value)
        return dict(r=self.r_slider.value, lora_alpha=self.alpha_text.value, target_modules=self.target_modules,
                    precision=self.precision_dropdown.value,
                    quantization=self.quantization_dropdown.value,
                    double_quant=self.double_quant_checkbox.value, optimizer=self.optimizer_dropdown.value,
                    batch_size=self.batch_text.value, seq_len=self.seq_text.value,
                    gradient_checkpointing=self.checkpointing_checkbox.value,
                    loss_kernel=self.loss_kernel_dropdown.value, distributed=self.distributed_dropdown.value,
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
        """Recompute everything from the controls; on bad input show the message and keep the last results."""
        try:
            self._update(self.model_source, self.settings(), self.gpu)
        except ValueError as err:
            self.error_label.value = f"<span style='color:#b00'>{html.escape(str(err))}</span>"
            return
        except Exception as err:  # a callback's error is otherwise lost; show it and keep the widget alive
            self.error_label.value = (f"<span style='color:#b00'>unexpected {type(err).__name__}: "
                                      f"{html.escape(str(err))}</span>")
            return
        self.error_label.value = ""

    def _update(self, source: Any, settings: dict[str, Any], gpu: Any) -> None:
        lora_keys = ("r", "target_modules")
        count = count_lora_params(source, **{k: settings[k] for k in lora_keys},
                                  quantization=settings["quantization"])
        current = estimate_memory(source, **settings)
        columns = scenarios(source, **settings)
        devices = per_gpu(source, **settings)
        plain, fused = fused_head_saving(source, **settings)
        advice = suggest_fit(source, gpu, **settings)
        self.count, self.estimates, self.per_gpu, self.advice = count, columns, devices, advice
        self.kernel_label.value = (f"attention: {html.escape(current.attention_kernel)} "
                                   f"({html.escape(current.attention_reason)}); peak at the "
                                   f"{html.escape(current.peak_phase)}")
        self.fused_label.value = (f"fused head: peak {_gib(fused.total_bytes)} GiB instead of "
                                  f"{_gib(plain.total_bytes)} GiB with the plain head "
                                  f"(logits + loss {_gib(fused.logits_bytes)} vs {_gib(plain.logits_bytes)} GiB)")
        self.per_gpu_table.value = per_gpu_html(devices, settings["distributed"], gpu)
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

