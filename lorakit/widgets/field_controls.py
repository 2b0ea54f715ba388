"""Text controls for TrainConfig fields whose value is not the text typed: numbers, the dataset, the preview's
prompts. Each is a stock ipywidgets text box (nothing to install in any front end) with ``field_value()``, the
value TrainConfig gets, which raises ValueError naming the field when the text is not one.

Numbers are text boxes, not ipywidgets' IntText / FloatText: those parse in the browser and silently put the
last good number back when a person types "abc", so the kernel never learns that anything was refused.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import ipywidgets as widgets
from traitlets import CUnicode

__all__ = ["DatasetText", "NumberText", "PromptsArea"]


class NumberText(widgets.Text):
    """A number typed as text; ``field_value()`` parses it (int or float, as the field is) or says why not.

    ``value`` is the text; a number assigned to it is written as text (``box.value = 50`` shows "50").
    ``low`` and ``high`` are the field's bounds (TrainConfig's BOUNDS), for a reader; TrainConfig checks them.
    """

    value = CUnicode("", help="the number as typed").tag(sync=True)

    def __init__(self, name: str, value: Any, kind: type, low: float | None = None, high: float | None = None,
                 optional: bool = False, **kwargs: Any) -> None:
        self.field_name, self.kind, self.low, self.high, self.optional = name, kind, low, high, optional
        super().__init__(value="" if value is None else _number_text(value), continuous_update=False, **kwargs)

    def show_value(self, value: int | float | None) -> None:
        self.value = "" if value is None else _number_text(value)

    def field_value(self) -> int | float | None:
        text = self.value.strip()
        if not text and self.optional:
            return None
        try:
            number = float(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{self.field_name}={text!r} is not a number; type {self._example()}") from None
        if self.kind is int:
            if not number.is_integer():
                raise ValueError(f"{self.field_name}={text!r} is not a whole number; type {self._example()}")
            return int(number)
        return number

    def _example(self) -> str:
        if self.kind is int:
            return "a whole number such as 8"
        return "a number such as 0.0002 or 2e-4"


def _number_text(value: Any) -> str:
    """A number as Python writes it (2e-4 as 0.0002, 1e-06 as 1e-06), so it reads back as the same number."""
    return str(value)


class DatasetText(widgets.Text):
    """The dataset: a built-in task's name or a file path typed here; a dataset given in code (a list, a
    datasets.Dataset) is described ("<in-memory list: 40 examples>") and kept while the text is left as it is."""

    def __init__(self, value: Any, **kwargs: Any) -> None:
        super().__init__(continuous_update=False, **kwargs)
        self.show_value(value)

    def show_value(self, value: Any) -> None:
        value = str(value) if isinstance(value, PurePath) else value
        self.in_memory = None if isinstance(value, str) or value is None else value
        self.description_text = self.value = _describe(value)

    def field_value(self) -> Any:
        text = self.value.strip()
        if self.in_memory is not None and text == self.description_text:
            return self.in_memory
        if not text:
            raise ValueError("dataset is empty: type a built-in task ('builtin', 'builtin-json') or a file path")
        return text


def _describe(dataset: Any) -> str:
    if dataset is None or isinstance(dataset, str):
        return dataset or ""
    size = len(dataset) if hasattr(dataset, "__len__") else "?"
    return f"<in-memory {type(dataset).__name__}: {size} examples>"


class PromptsArea(widgets.Textarea):
    """A list of prompts, one a line (blank lines left out)."""

    def __init__(self, value: list[str], **kwargs: Any) -> None:
        super().__init__(value="\n".join(value), continuous_update=False, **kwargs)

    def show_value(self, value: list[str]) -> None:
        self.value = "\n".join(value)

    def field_value(self) -> list[str]:
        return [line.strip() for line in self.value.splitlines() if line.strip()]
