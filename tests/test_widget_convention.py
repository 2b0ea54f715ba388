"""One widget convention: every widget lorakit offers is an ipywidgets widget (a Box subclass), displayed and
composed as itself; none holds a ``.widget`` and forwards attributes through ``__getattr__``."""

from __future__ import annotations

import importlib

import ipywidgets as widgets
import pytest

import lorakit.widgets

CHECKERS = {"NumberAnswer", "ChoiceAnswer", "ManyAnswer", "BitsAnswer"}  # answer checkers, not widgets
WIDGETS = sorted(set(lorakit.widgets.__all__) - CHECKERS)


@pytest.mark.parametrize("name", WIDGETS)
def test_every_lorakit_widget_is_an_ipywidget_without_forwarding(name):
    cls = getattr(importlib.import_module(lorakit.widgets._EXPORTS[name]), name)
    assert issubclass(cls, widgets.Box), f"{name} is not an ipywidgets Box"
    own = [c.__name__ for c in cls.__mro__ if c.__module__.startswith("lorakit") and "__getattr__" in vars(c)]
    assert own == [], f"{name} forwards attributes through __getattr__ in {own}"


def test_the_panel_and_the_dashboard_compose_as_themselves():
    from lorakit.widgets.live_dashboard import LiveDashboard
    from lorakit.widgets.trainer_panel import TrainerPanel

    panel = TrainerPanel()
    assert panel.dashboard in panel.children and isinstance(panel.dashboard, LiveDashboard)
    assert panel.dashboard.plot in panel.dashboard.children
    assert not hasattr(panel, "widget") and not hasattr(panel.dashboard, "widget")
    with pytest.raises(AttributeError):
        panel.max_steps  # noqa: B018 -- a field's control is panel.fields["max_steps"], not an attribute
    assert panel.form.values()["max_steps"] == panel.config.max_steps
    assert panel.form in panel.children and isinstance(panel.form, widgets.Box)  # the form is a widget too
    assert not hasattr(panel.form, "widget")
