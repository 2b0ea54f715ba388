"""Fit before you run, in the widgets: the memory ledger under the dashboard's plots, and the token lengths of the
data with the max_seq_length cutoff, which the TrainerPanel shows before Start.

``FitLedgerView`` is a ``DashboardView``: once the first step is logged it shows the run's fit check
(``StartInfo["fit"]``, a ``lorakit.training.fit.FitReport``): each component planned and measured, the error,
the peak with its moment, whether it fits and why the batch is what it is; on a GPU also the run's own peak so
far (``torch.cuda.max_memory_allocated``) against the plan. ``LengthView`` tokenizes the panel's dataset as the
trainer will (``lorakit.training.lengths.token_lengths``) when it is opened, and redraws the cutoff as
max_seq_length or batch_size change, without tokenizing again.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from lorakit.widgets.tables import row, scroll_table

__all__ = ["FitLedgerView", "LengthSection", "LengthView", "ledger_html"]


def _mib(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.1f}"


def _error(planned: float | None, measured: float | None) -> str:
    return "—" if planned is None or not measured else f"{planned / measured - 1:+.1%}"


def ledger_html(fit: dict, run_peak: tuple[int, int] | None = None) -> str:
    """The ledger as an HTML table. ``run_peak``: (step, bytes) of the run's own measured peak so far (GPU)."""
    head = row(["component", "planned MiB", "measured MiB", "error"], tag="th")
    rows = [row([html.escape(r["label"]), _mib(r["planned_bytes"]), _mib(r["measured_bytes"]),
                 _error(r["planned_bytes"], r["measured_bytes"])]) for r in fit["ledger"]]
    peak = f"<b>peak</b> at the {html.escape(fit['peak_phase'])} moment"
    rows.append(row([peak, _mib(fit["predicted_bytes"]), _mib(fit["measured_bytes"]),
                     _error(fit["predicted_bytes"], fit["measured_bytes"])], style="border-top:1px solid #999"))
    if run_peak is not None:
        step, peak_bytes = run_peak
        rows.append(row([f"the run's peak to step {step}", _mib(fit["predicted_bytes"]), _mib(peak_bytes),
                         _error(fit["predicted_bytes"], peak_bytes)]))
    source = "the GPU's max_memory_allocated" if fit["device"] == "cuda" else "lorakit's tensor tracker (CPU)"
    room = fit["room_bytes"] / 2**30
    caption = (f"Memory ledger of the worst batch ({fit['rows']} × {fit['width']} tokens, {html.escape(fit['layout'])}"
               f"), measured by {source} before step 1: {'fits' if fit['fits'] else 'does not fit'}, "
               f"{abs(room):.2f} GiB {'to spare' if room >= 0 else 'short'} under "
               f"{fit['budget_bytes'] / 2**30:.2f} GiB allowed.")
    if fit.get("batch_reason"):
        caption += f" Why this batch: {html.escape(fit['batch_reason'])}."
    return scroll_table(head + "".join(rows), css_class="lorakit-fit-ledger", caption=caption)


class FitLedgerView(widgets.VBox):
    """The plan against the measurement, under the dashboard's plots, from the first logged step on."""

    def __init__(self) -> None:
        self.table = widgets.HTML(value="")
        self._key: tuple | None = None
        super().__init__(children=[self.table])
        self.add_class("lorakit-fit-ledger-view")

    def show(self, history: list[dict], evals: list[dict], info: dict[str, Any]) -> None:
        fit = info.get("fit")
        if not fit or not history:
            return
        peaks = [r.get("mem_peak_bytes") for r in history if r.get("mem_peak_bytes") is not None]
        run_peak = (history[-1]["step"], max(peaks)) if peaks else None
        key = (id(fit), run_peak)
        if key == self._key:  # nothing new: keep the frame cheap
            return
        self._key = key
        self.table.value = ledger_html(fit, run_peak)

    def reset(self) -> None:
        self._key, self.table.value = None, ""


class LengthView(widgets.VBox):
    """The data's token lengths with the cutoff, for the config a panel would start (computed on ``refresh``)."""

    def __init__(self, config_of: Callable[[], Any], controls: dict[str, widgets.Widget] | None = None) -> None:
        self.config_of = config_of
        self.text = widgets.HTML(value="<small>Open to tokenize the data as the trainer will.</small>")
        self.picture = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.report: Any = None  # the last LengthReport
        self._source: tuple | None = None  # (dataset, model) the report was computed for
        super().__init__(children=[self.text, self.picture])
        self.add_class("lorakit-length-view")
        for name in ("max_seq_length", "batch_size"):
            if controls and name in controls:
                controls[name].observe(self._on_setting_change, names="value")

    def refresh(self) -> None:
        """Tokenize (once per dataset and model) and draw with the current cutoff; a bad setting is shown."""
        from lorakit.training.lengths import token_lengths

        try:
            config = self.config_of()
            source = (id(config.dataset), str(config.dataset) if isinstance(config.dataset, str) else None,
                      config.model)
            if self.report is None or source != self._source:
                self.report, self._source = token_lengths(config), source
            batch = config.batch_size if config.batch_size != "auto" else None
            self.report = self.report.at(config.max_seq_length, batch)
        except Exception as exc:  # noqa: BLE001 -- a widget callback must show the failure, not lose it
            self.text.value = f"<span style='color:#b00020'>{html.escape(f'{type(exc).__name__}: {exc}')}</span>"
            return
        self._draw()

    def _draw(self) -> None:
        from lorakit.viz.lengths import length_png

        self.text.value = "<br>".join(html.escape(line) for line in self.report.lines())
        self.picture.value = length_png(self.report)

    def _on_setting_change(self, _change: dict) -> None:
        if self.report is not None:
            self.refresh()


class LengthSection(widgets.Accordion):
    """A closed section "Your data in tokens" holding a LengthView, which tokenizes when the section opens."""

    TITLE = "Your data in tokens (max_seq_length cutoff)"

    def __init__(self, config_of: Callable[[], Any], controls: dict[str, widgets.Widget] | None = None) -> None:
        self.view = LengthView(config_of, controls)
        super().__init__(children=[self.view], selected_index=None)
        self.set_title(0, self.TITLE)
        self.add_class("lorakit-length-section")
        self.observe(self._on_open_change, names="selected_index")

    def _on_open_change(self, change: dict) -> None:
        if change["new"] == 0:
            self.view.refresh()
