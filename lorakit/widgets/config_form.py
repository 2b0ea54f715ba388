"""ConfigForm: controls for TrainConfig fields, built from the schema, TrainConfig's own tables.

A field's control follows from what TrainConfig knows about it: a field with a closed set of values
(``lorakit.training.config.FIELD_CHOICES``) becomes a dropdown labelled by the values' short names (the records'
long labels in its tooltip) or as off / on; a number becomes a text box checked against the field's type and
``lorakit.training.config.BOUNDS``; the dataset and the preview's prompts have controls of their own
(``field_controls``); anything else a text box. Labels are the field names, as in TrainConfig, peft and
transformers. So a panel shows one more setting by naming one more field, and a new setting needs no line here.

What a person types is checked as soon as they leave the box: a value TrainConfig would refuse is said under the
form at once (``problems``), and ``apply`` raises the same ValueError.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as widgets

from lorakit.choices import OPTIMIZERS, PRECISIONS, QUANTIZATIONS
from lorakit.training.config import AUTO_NUMBERS, BOUNDS, FIELD_CHOICES, OPTIONAL, TrainConfig
from lorakit.training.records import DATASET_HELP
from lorakit.widgets.field_controls import DatasetText, NumberText, PromptsArea

__all__ = ["CHOICES", "HINTS", "ConfigForm", "make_control", "short_label"]


_RECORDS = {"precision": PRECISIONS, "quantization": QUANTIZATIONS, "optimizer": OPTIMIZERS}
_WORDS = {False: "off", True: "on", None: "as precision"}  # what a person reads for False / True / None


def short_label(label: str) -> str:
    """'fp16 (autocast + loss scaling)' -> 'fp16': what a dropdown shows (the rest goes in its tooltip)."""
    return label.split(" (")[0]


def _labelled(field: str, values: Iterable[Any]) -> list[tuple[str, Any]]:
    """Dropdown options (label, value): a record's label where the field has records, else the value in words."""
    records = _RECORDS.get(field, {})
    return [(records[v].label if v in records else _WORDS.get(v, str(v)) if not isinstance(v, str) else v, v)
            for v in values]


# field -> dropdown options (label, value); the values are exactly TrainConfig's allowed values
CHOICES: dict[str, list[tuple[str, Any]]] = {field: _labelled(field, values) for field, values in FIELD_CHOICES.items()}

# field -> what a hover over the control says (the meaning of special values)
HINTS: dict[str, str] = {
    "model": "'embedded' (SmolLM2-135M-Instruct, built in), a local Hugging Face model folder, or a hub id such as "
             "'HuggingFaceTB/SmolLM2-135M-Instruct' (needs a network)",
    "dataset": DATASET_HELP,
    "preview_prompts": "questions answered before and after training, one a line; empty: the first "
                       "preview_examples held-out examples of the dataset, shown with their held-out answers",
    "max_steps": "optimizer steps; -1 trains for num_train_epochs instead",
    "gradient_checkpointing": "auto: on for a quantized base, or when the run would not fit without it",
    "loss_kernel": "fused: the output head and loss never hold the full logits; auto: fused where supported",
    "compile": "torch.compile each decoder block; auto: on CUDA when the run is long enough to pay it back",
    "batch_size": "examples per step (per process); auto: the largest batch that fits, measured before step 1",
}

_LAYOUT = {"width": "auto"}
_STYLE = {"description_width": "13em"}  # wide enough for "gradient_checkpointing"


def _hint(name: str) -> str:
    """A control's tooltip: its hint, and for a dropdown of records every option's long label."""
    long_labels = [label for label, _ in CHOICES.get(name, ()) if short_label(label) != label]
    options = "; ".join(label for label, _ in CHOICES[name]) if long_labels else ""
    return "; ".join(text for text in (HINTS.get(name, ""), options) if text) or name


def make_control(name: str, value: Any) -> widgets.ValueWidget:
    """The control for one TrainConfig field, showing ``value``."""
    common = {"description": name, "style": _STYLE, "layout": widgets.Layout(**_LAYOUT), "tooltip": _hint(name)}
    if name in CHOICES:
        options = [(short_label(label), v) for label, v in CHOICES[name]]
        return widgets.Dropdown(options=options, value=value, **common)
    if name in BOUNDS:
        low, high, kind = BOUNDS[name]
        box = AutoNumberText if name in AUTO_NUMBERS else NumberText
        return box(name, value, int if kind is int else float, low, high, name in OPTIONAL, **common)
    if name == "dataset":
        return DatasetText(value, **common)
    if name == "preview_prompts":
        # the whole row (grid_area: ipywidgets writes grid-area after grid-column, which would clear it)
        common["layout"] = widgets.Layout(width="auto", grid_area="auto / 1 / auto / -1", height="4.5em")
        return PromptsArea(value, placeholder="one question a line", **common)
    return widgets.Text(value="" if value is None else str(value), **common)


class AutoNumberText(NumberText):
    """A number box that also takes "auto" (TrainConfig's AUTO_NUMBERS, e.g. batch_size)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, placeholder="a whole number or auto", **kwargs)

    def field_value(self) -> int | float | str | None:
        return "auto" if self.value.strip().lower() == "auto" else super().field_value()

    def _example(self) -> str:
        return super()._example() + ", or auto"


def _text_value(text: str, optional: bool) -> str | None:
    return text.strip() or (None if optional else "")


class ConfigForm(widgets.VBox):
    """One control per named TrainConfig field in a grid that wraps to the width available, and a line under it
    that says at once which typed value TrainConfig refuses (``problems``)."""

    def __init__(self, config: TrainConfig, names: Sequence[str], *, min_column_px: int = 320) -> None:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"not TrainConfig fields: {', '.join(unknown)}")
        self.config = config  # the run the values go into (apply); the form checks its values against it
        self.controls: dict[str, widgets.ValueWidget] = {n: make_control(n, getattr(config, n)) for n in names}
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        self._optional = {n: defaults[n] is None for n in names}  # an empty text box means None there
        for name, control in self.controls.items():
            control.add_class(f"lorakit-field-{name}")
            control.observe(self._on_control_change, names="value")
        columns = f"repeat(auto-fill, minmax(min({min_column_px}px, 100%), 1fr))"
        self.grid = widgets.GridBox(list(self.controls.values()),
                                    layout=widgets.Layout(grid_template_columns=columns, grid_gap="2px 16px"))
        self.problems = widgets.HTML("")
        self.problems.add_class("lorakit-form-problems")
        super().__init__(children=[self.grid, self.problems])
        self.add_class("lorakit-config-form")

    def values(self) -> dict[str, Any]:
        """The controls' values by field name (text stripped; an empty text box is None); ValueError naming the
        field when a typed value is not one (a number box holding "abc")."""
        out = {}
        for name, control in self.controls.items():
            if hasattr(control, "field_value"):
                out[name] = control.field_value()
            elif isinstance(control, widgets.Text):
                out[name] = _text_value(control.value, self._optional[name])
            else:
                out[name] = control.value
        return out

    def apply(self, config: TrainConfig | None = None) -> TrainConfig:
        """``config`` (by default the form's) with the controls' values; ValueError (naming the field) if one is
        not allowed."""
        return dataclasses.replace(self.config if config is None else config, **self.values())

    def check(self) -> str:
        """What TrainConfig says about the values as they stand ('' when it takes them); shown under the form."""
        try:
            self.apply()
        except ValueError as exc:
            message = f"Refused: {exc}"
        else:
            message = ""
        self.problems.value = f"<span style='color:#b00020'>{html.escape(message)}</span>" if message else ""
        return message

    def show(self, config: TrainConfig) -> None:
        """Set every control to the config's value."""
        self.config = config
        for name, control in self.controls.items():
            value = getattr(config, name)
            if hasattr(control, "show_value"):
                control.show_value(value)
            else:
                control.value = "" if value is None and isinstance(control, widgets.Text) else value

    @property
    def disabled(self) -> bool:
        return all(c.disabled for c in self.controls.values())

    @disabled.setter
    def disabled(self, value: bool) -> None:
        for control in self.controls.values():
            control.disabled = value

    def _on_control_change(self, _change: dict) -> None:
        self.check()
