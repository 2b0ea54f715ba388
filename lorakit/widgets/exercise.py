"""Exercise and Quiz: workshop exercises with an instant check, a hint, a reveal, and a score per notebook.

An ``Exercise`` shows a prompt, an answer control built from its answer spec (``lorakit.widgets.answers``:
a text box for numbers, radio buttons for one choice, check boxes for several, a text box plus clickable bits
for a bit pattern), and Check / Hint / Reveal buttons. Its state is ``status`` ("unanswered", "wrong",
"right", "revealed"), ``attempts`` and ``hint_shown``; whatever is entered gets a message in ``feedback``
and nothing raises. Once right, an exercise stays right: another answer checked afterwards is judged too,
but does not take the point away. A ``Quiz`` creates a notebook's exercises and keeps their score live::

    quiz = Quiz("Workshop")
    quiz                                     # the score line
    quiz.exercise(1, "How many mantissa bits does BF16 store?", NumberAnswer(7), hint="FP32 has 23 ...")
"""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as widgets
import traitlets

from lorakit.widgets.answers import Answer, BitsAnswer, NotAnAnswer, Verdict

__all__ = ["STATUSES", "Exercise", "Quiz"]

STATUSES = ("unanswered", "wrong", "right", "revealed")
_COLOURS = {"right": "#1e8449", "wrong": "#b03a2e", "invalid": "#9a7d0a"}
_SYMBOLS = {"right": "✔", "wrong": "✘", "invalid": "⚠"}


def _html(css: str, value: str = "") -> widgets.HTML:
    label = widgets.HTML(value)
    label.add_class(css)
    return label


class Exercise(widgets.VBox):
    """One exercise: prompt, answer control, Check / Hint / Reveal, and the feedback of the last check."""

    status = traitlets.Enum(STATUSES, default_value="unanswered")
    attempts = traitlets.Int(0)  # checks of a well-formed answer (invalid input does not count)
    hint_shown = traitlets.Bool(False)

    def __init__(self, number: int, prompt: str, answer: Answer, *, hint: str = "", solution: str = "") -> None:
        self.number, self.answer = number, answer
        self.solution = solution or answer.solution  # the reveal: the answer and why
        self.prompt_html = widgets.HTMLMath(f"<b>Exercise {number}.</b> {prompt}")
        self.prompt_html.add_class("lorakit-exercise-prompt")
        self.control = self._make_control()
        self.check_button = widgets.Button(description="Check", button_style="primary", icon="check")
        self.hint_button = widgets.Button(description="Hint", icon="lightbulb-o", disabled=not hint)
        self.reveal_button = widgets.Button(description="Reveal", icon="eye")
        for button, handler in ((self.check_button, self._on_check_button_click),
                                (self.hint_button, self._on_hint_button_click),
                                (self.reveal_button, self._on_reveal_button_click)):  # fmt: skip
            button.add_class(f"lorakit-{button.description.lower()}-button")
            button.on_click(handler)
        self.hint = hint
        self.feedback = _html("lorakit-feedback")
        self.hint_html = _html("lorakit-hint")
        self.solution_html = _html("lorakit-solution")
        self.verdict: Verdict | None = None
        buttons = widgets.HBox([self.check_button, self.hint_button, self.reveal_button])
        super().__init__([self.prompt_html, self.control, buttons, self.feedback, self.hint_html, self.solution_html])
        self.add_class("lorakit-exercise")
        self.add_class(f"lorakit-exercise-{number}")

    # ----- the answer control ----------------------------------------------------------------------------
    def _make_control(self) -> widgets.Widget:
        kind = self.answer.kind
        if kind == "choice":
            self.choice = widgets.RadioButtons(options=list(self.answer.options), value=None,
                                               layout=widgets.Layout(width="auto"))  # fmt: skip
            return self.choice
        if kind == "many":
            self.boxes = [widgets.Checkbox(description=o, value=False, indent=False) for o in self.answer.options]
            return widgets.VBox(self.boxes)
        self.text = widgets.Text(placeholder=self._placeholder(), layout=widgets.Layout(width="420px"))
        self.text.add_class("lorakit-answer")
        return self.text if kind != "bits" else self._make_bits_control()

    def _make_bits_control(self) -> widgets.Widget:
        """One button per bit, coloured by field as in the FloatExplorer, above the text box they fill."""
        from lorakit.formats import get_format
        from lorakit.widgets.format_views import FIELD_COLOURS  # imports matplotlib: only for bit exercises

        self.bit_buttons = []
        for field in get_format(self.answer.format).field_of_bit:
            button = widgets.Button(description="0", tooltip=field,
                                    layout=widgets.Layout(width="26px", height="30px", padding="0"))  # fmt: skip
            button.style.button_color = FIELD_COLOURS[field]
            button.add_class("lorakit-answer-bit")
            button.on_click(self._on_bit_button_click)
            self.bit_buttons.append(button)
        self.text.observe(self._on_text_change, names="value")
        return widgets.VBox([widgets.HBox(self.bit_buttons), self.text])

    def _placeholder(self) -> str:
        if isinstance(self.answer, BitsAnswer):
            return f"the {len(self.answer.expected)} bits (spaces are fine), or click them above"
        unit = getattr(self.answer, "unit", "")
        return f"a number{' in ' + unit if unit else ''}, then Check"

    def raw_answer(self):
        """What the participant has entered, as the control holds it (text, an option, or ticked options)."""
        kind = self.answer.kind
        if kind == "choice":
            return self.choice.value
        if kind == "many":
            return [box.description for box in self.boxes if box.value]
        return self.text.value

    def submit(self, raw) -> Verdict:
        """Enter ``raw`` into the control and press Check (what a participant does; used by tests)."""
        kind = self.answer.kind
        if kind == "choice":
            self.choice.value = raw if raw in self.answer.options else None
        elif kind == "many":
            ticked = {raw} if isinstance(raw, str) else set(raw or ())
            for box in self.boxes:
                box.value = box.description in ticked
        else:
            self.text.value = "" if raw is None else str(raw)
        self.check_button.click()
        return self.verdict

    # ----- handlers -------------------------------------------------------------------------------------
    def _on_check_button_click(self, _button=None) -> None:
        self.verdict = verdict = self._judge(self.raw_answer)
        message = verdict.message
        if verdict.status != "invalid":
            self.attempts += 1
            if self.status == "right" and verdict.status == "wrong":
                message += " Your earlier right answer still counts."  # trying another answer costs no point
            elif self.status != "revealed":
                self.status = verdict.status
        colour, symbol = _COLOURS[verdict.status], _SYMBOLS[verdict.status]
        self.feedback.value = f'<span style="color:{colour}">{symbol} {message}</span>'

    def _judge(self, read: Callable) -> Verdict:
        """The answer spec's verdict; a failing checker is reported in the feedback, never raised."""
        try:
            return self.answer.check(read())
        except NotAnAnswer as err:
            return Verdict("invalid", str(err))
        except Exception as err:  # noqa: BLE001 -- a participant must never see a traceback
            return Verdict("invalid", f"This answer could not be checked ({html.escape(type(err).__name__)}); "
                                      "tell the instructor.")

    def _on_hint_button_click(self, _button=None) -> None:
        self.hint_shown = True
        self.hint_html.value = f"<i>Hint:</i> {self.hint}"

    def _on_reveal_button_click(self, _button=None) -> None:
        if self.status != "right":
            self.status = "revealed"
        self.solution_html.value = f"<i>Answer:</i> {self.solution}"

    def _on_bit_button_click(self, button: widgets.Button) -> None:
        _show_bit(button, "0" if button.description == "1" else "1")
        self.text.value = "".join(b.description for b in self.bit_buttons)

    def _on_text_change(self, change: dict) -> None:
        """Typed bits of the right width show on the buttons too; anything else leaves them alone."""
        try:
            bits = self.answer.parse(change["new"])
        except NotAnAnswer:
            return
        for button, bit in zip(self.bit_buttons, bits, strict=True):
            _show_bit(button, bit)


def _show_bit(button: widgets.Button, bit: str) -> None:
    if button.description != bit:  # only changed bits cross the comm
        button.description = bit
        button.style.font_weight = "bold" if bit == "1" else "normal"


class Quiz(widgets.HBox):
    """A notebook's exercises and their live score: solved (right before any reveal) out of all."""

    solved = traitlets.Int(0)

    def __init__(self, title: str = "Exercises") -> None:
        self.title = title
        self.exercises: dict[int, Exercise] = {}
        self.score_html = _html("lorakit-score")
        super().__init__([self.score_html])
        self.add_class("lorakit-quiz")
        self._refresh()

    def exercise(self, number: int, prompt: str, answer: Answer, *, hint: str = "", solution: str = "") -> Exercise:
        """Create exercise ``number`` (a later one with the same number replaces it) and count it in the score."""
        exercise = Exercise(number, prompt, answer, hint=hint, solution=solution)
        self.exercises[number] = exercise
        exercise.observe(self._on_exercise_change, names="status")
        self._refresh()
        return exercise

    def _on_exercise_change(self, change: dict) -> None:
        if self.exercises.get(change["owner"].number) is change["owner"]:
            self._refresh()

    def _refresh(self) -> None:
        states = [e.status for e in self.exercises.values()]
        self.solved = states.count("right")
        revealed = states.count("revealed")
        extra = f", {revealed} revealed" if revealed else ""
        self.score_html.value = (f"<b>{html.escape(self.title)}</b>: {self.solved} of {len(states)} solved{extra}")

    @property
    def score(self) -> tuple[int, int]:
        """(solved, number of exercises)."""
        return self.solved, len(self.exercises)

    def answer_key(self) -> str:
        """Every exercise's answer, one per line, in order ("Exercise N: ..."), for the instructor."""
        return "\n".join(f"Exercise {n}: {e.answer.solution}" for n, e in sorted(self.exercises.items()))
