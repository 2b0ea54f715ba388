"""RankControl: LoRA's r as a hand can set it: a slider over powers of two, and a box for any value.

r runs from 1 to the width of the narrowest adapted layer (1,024 on Llama-3.1-8B). On a linear slider 8 and 16
are a pixel apart; people pick powers of two, so the slider steps through them (and the bound itself), and the
box beside it takes any integer. The box holds the value; the slider follows it to the stop at or below.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import traitlets

__all__ = ["RankControl", "rank_stops"]


def rank_stops(bound: int) -> list[int]:
    """The slider's stops: powers of two up to ``bound``, and ``bound`` itself."""
    stops = [2**k for k in range(bound.bit_length()) if 2**k <= bound]
    return stops if stops[-1] == bound else [*stops, bound]


def stop_at_most(stops: Sequence[int], r: int) -> int:
    """The largest stop not above r (where the slider sits for a typed r)."""
    return max((s for s in stops if s <= r), default=stops[0])


class RankControl(widgets.HBox):
    """``value``: r (1..``max``); set by the slider (powers of two) or typed in the box (any integer)."""

    value = traitlets.Int(8)
    max = traitlets.Int(1024)

    def __init__(self, value: int = 8, max: int = 1024, description: str = "r", style: dict | None = None) -> None:
        self.text = widgets.BoundedIntText(value=value, min=1, max=max,
                                           layout=widgets.Layout(width="5.5em", min_width="5.5em"))
        self.text.add_class("lorakit-r-text")
        stops = rank_stops(max)
        self.slider = widgets.SelectionSlider(
            options=stops, value=stop_at_most(stops, value), description=description, continuous_update=False,
            readout=False, style=style or {}, layout=widgets.Layout(width="auto", flex="1 1 0%", min_width="0"))
        self.slider.add_class("lorakit-r")
        self._following = False  # True while the slider is moved to follow the box
        super().__init__([self.slider, self.text], layout=widgets.Layout(flex="1 1 0%", min_width="0"))
        self.value, self.max = self.text.value, max
        self.slider.observe(self._on_slider_change, names="value")
        self.text.observe(self._on_text_change, names="value")

    def _on_slider_change(self, change: dict) -> None:
        if not self._following:
            self.text.value = change["new"]  # the box holds r

    def _on_text_change(self, change: dict) -> None:
        self._follow()
        self.value = change["new"]

    @traitlets.observe("max")
    def _on_max_change(self, change: dict) -> None:
        """A new bound: new stops, and r lowered to it if it was above (the box clamps it)."""
        with self.slider.hold_sync():
            self._following = True
            try:
                self.slider.options = rank_stops(change["new"])
            finally:
                self._following = False
            self.text.max = change["new"]  # may lower the value: _on_text_change follows
            self._follow()

    @traitlets.observe("value")
    def _on_value_change(self, change: dict) -> None:
        self.text.value = change["new"]  # r set from Python: the box (and the slider) show it

    def _follow(self) -> None:
        """Move the slider to the stop at or below the box's value, without writing the box back."""
        self._following = True
        try:
            self.slider.value = stop_at_most(self.slider.options, self.text.value)
        finally:
            self._following = False
