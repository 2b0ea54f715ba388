"""ConfigForm: controls for TrainConfig fields, built from the schema, TrainConfig's own tables.

A field's control follows from what TrainConfig knows about it: a field with a closed set of values
(``lorakit.training.config.FIELD_CHOICES``) becomes a dropdown labelled by the values' records (precision,
quantization, optimizer) or as off / on, a number becomes an int or float box with the bounds of
``lorakit.training.config.BOUNDS``, anything else a text box. Labels are the field names, as in TrainConfig,
peft and transformers. So a panel shows one more setting by naming one more field, and a new setting needs no
line here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets as widgets

from lorakit.choices import OPTIMIZERS, PRECISIONS, QUANTIZATIONS
from lorakit.training.config import AUTO_NUMBERS, BOUNDS, FIELD_CHOICES, TrainConfig

__all__ = ["CHOICES", "HINTS", "ConfigForm", "make_control"]


_RECORDS = {"precision": PRECISIONS, "quantization": QUANTIZATIONS, "optimizer": OPTIMIZERS}
_WORDS = {False: "off", True: "on", None: "as precision"}  # what a person reads for False / True / None


def _labelled(field: str, values: Iterable[Any]) -> list[tuple[str, Any]]:
    """Dropdown options (label, value): a record's label where the field has records, else the value in words."""
    records = _RECORDS.get(field, {})
    return [(records[v].label if v in records else _WORDS.get(v, str(v)) if not isinstance(v, str) else v, v)
            for v in values]


# field -> dropdown options (label, value); the values are exactly TrainConfig's allowed values
CHOICES: dict[str, list[tuple[str, Any]]] = {field: _labelled(field, values) for field, values in FIELD_CHOICES.items()}

# field -> what a hover over the control says (the meaning of special values)
HINTS: dict[str, str] = {
    "model": "'embedded' (SmolLM2-135M-Instruct), a local Hugging Face folder or a hub id",
    "max_steps": "optimizer steps; -1 trains for num_train_epochs instead",
    "gradient_checkpointing": "auto: on for a quantized base, or when the run would not fit without it",
    "loss_kernel": "fused: the output head and loss never hold the full logits; auto: fused where supported",
    "compile": "torch.compile each decoder block; auto: on CUDA when the run is long enough to pay it back",
    "batch_size": "examples per step (per process); auto: the largest batch that fits, measured before step 1",
}

_LAYOUT = {"width": "auto"}
_STYLE = {"description_width": "13em"}  # wide enough for "gradient_checkpointing"


def make_control(name: str, value: Any) -> widgets.ValueWidget:
    """The control for one TrainConfig field, showing ``value``."""
    common = {"description": name, "style": _STYLE, "layout": widgets.Layout(**_LAYOUT),
              "tooltip": HINTS.get(name, name)}
    if name in CHOICES:
        return widgets.Dropdown(options=CHOICES[name], value=value, **common)
    if name in AUTO_NUMBERS:  # a number, or "auto" picked from the list
        return widgets.Combobox(value=str(value), options=["auto"], ensure_option=False, **common)
    if name in BOUNDS:
        low, high, kind = BOUNDS[name]
        if kind is int and high is not None:  # both bounds: the box itself keeps the value inside them
            return widgets.BoundedIntText(value=value, min=low, max=high, **common)
        # One bound (or a special value such as max_steps=-1): TrainConfig checks and names the range.
        box = widgets.IntText if kind is int else widgets.FloatText
        return box(value=value, **common)
    return widgets.Text(value="" if value is None else str(value), **common)


def _text_value(text: str, optional: bool) -> str | None:
    return text.strip() or (None if optional else "")


def _auto_number(text: str) -> int | str:
    """A number-or-"auto" box's value: a whole number as an int, anything else as typed (TrainConfig names it)."""
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


class ConfigForm:
    """One control per named TrainConfig field in a grid that wraps to the width available."""

    def __init__(self, config: TrainConfig, names: Sequence[str], *, min_column_px: int = 300) -> None:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"not TrainConfig fields: {', '.join(unknown)}")
        self.controls: dict[str, widgets.ValueWidget] = {n: make_control(n, getattr(config, n)) for n in names}
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        self._optional = {n: defaults[n] is None for n in names}  # an empty text box means None there
        for name, control in self.controls.items():
            control.add_class(f"lorakit-field-{name}")
        columns = f"repeat(auto-fill, minmax({min_column_px}px, 1fr))"
        self.widget = widgets.GridBox(list(self.controls.values()),
                                      layout=widgets.Layout(grid_template_columns=columns, grid_gap="2px 16px"))
        self.widget.add_class("lorakit-config-form")

    def values(self) -> dict[str, Any]:
        """The controls' values by field name (text stripped; an empty text box is None)."""
        return {name: _auto_number(c.value) if name in AUTO_NUMBERS
                else _text_value(c.value, self._optional[name]) if isinstance(c, widgets.Text) else c.value
                for name, c in self.controls.items()}

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with the controls' values; ValueError (naming the field) if one is not allowed."""
        return dataclasses.replace(config, **self.values())

    def show(self, config: TrainConfig) -> None:
        """Set every control to the config's value."""
        for name, control in self.controls.items():
            value = getattr(config, name)
            control.value = str(value) if isinstance(control, widgets.Text) and value is not None else value

    @property
    def disabled(self) -> bool:
        return all(c.disabled for c in self.controls.values())

    @disabled.setter
    def disabled(self, value: bool) -> None:
        for control in self.controls.values():
            control.disabled = value
