"""What an exercise accepts and how it judges it: a number, one choice, several choices, or a bit pattern.

Each answer spec turns whatever a participant typed or ticked into a ``Verdict``: right, wrong (with a pointer
towards the answer) or invalid (a friendly message saying what kind of input is expected). ``check`` never
raises, whatever it is given. Plain Python, no widgets: the Exercise widget builds its control from ``kind``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["right", "wrong", "invalid"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check: ``status`` and a short HTML-safe message for the participant."""

    status: Status
    message: str


class NotAnAnswer(ValueError):
    """The input is not of the expected kind; the message says, kindly, what is expected."""


# ---- numbers ------------------------------------------------------------------------------------------

_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d*)?$")
_POWER = re.compile(r"^([+-]?\d+(?:\.\d*)?)\s*(?:\^|\*\*)\s*\(?\s*([+-]?\d+)\s*\)?$")
_FRACTION = re.compile(r"^([+-]?\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)$")
# A count written with a multiplier, as people write parameter counts: 16.8M, 131k, 8.0 G
_SUFFIXED = re.compile(r"^([+-]?\d+(?:\.\d*)?(?:e[+-]?\d+)?)\s*([kKMG])$")
MULTIPLIERS = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def parse_number(text: Any, unit: str = "") -> float:
    """A number as people type it: 131072, 131 072, 131,072, 0.5, 1e-3, 2^-8, 2**-8, 1/8, "16 GiB" for unit GiB;
    without a unit also a count with a multiplier: 16.8M, 131k, 8G (k = 10^3, M = 10^6, G = 10^9).

    A multiplier is refused where the answer has a unit: "21.8G" for a number of GiB is ambiguous.
    Raises NotAnAnswer with a friendly message for anything else (empty, letters, inf, nan).
    """
    if text is None or not str(text).strip():
        raise NotAnAnswer("Type a number first.")
    raw = str(text).strip()
    clean = raw.replace("\u202f", "").replace("\u00a0", "").replace("_", "").replace("−", "-")
    if unit and clean.lower().endswith(unit.lower()):
        clean = clean[: -len(unit)]
    clean = clean.strip()
    if _THOUSANDS.match(clean):
        clean = clean.replace(",", "")
    clean = re.sub(r"(?<=\d) (?=\d{3}\b)", "", clean)  # 131 072
    value = _to_float(clean)
    if value is None and not unit and (match := _SUFFIXED.match(clean)):
        value = float(match[1]) * MULTIPLIERS[match[2]]
    if value is None or not math.isfinite(value):
        example = f" (a unit of {unit} is fine)" if unit else " or 16.8M"
        raise NotAnAnswer(
            f"“{html.escape(raw[:40])}” is not a number I can read. Type digits such as 42, 0.32, 1e-3, 2^-8, "
            f"1/8{example}."
        )
    return value


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        if match := _POWER.match(text):
            return float(match[1]) ** int(match[2])
        if match := _FRACTION.match(text):
            return float(match[1]) / float(match[2])
    except (OverflowError, ZeroDivisionError):
        return None
    return None


def format_number(x: float, digits: int = 6) -> str:
    """A number for a message: integers with thin groups (131 072), others to ``digits`` significant digits."""
    if float(x).is_integer() and abs(x) < 1e15:
        return f"{int(x):,}".replace(",", "\u202f")
    return f"{x:.{digits}g}"


@dataclass(frozen=True)
class NumberAnswer:
    """A number, right within ``rel_tol`` (relative) or ``abs_tol``; wrong answers are told too high or too low."""

    expected: float
    rel_tol: float = 1e-9
    abs_tol: float = 0.0
    unit: str = ""  # shown after the number and accepted after a typed one ("GiB", "bits")
    digits: int = 6  # significant digits of a non-integer answer when it is shown
    kind: str = field(default="number", init=False)

    def check(self, raw: Any) -> Verdict:
        try:
            value = parse_number(raw, self.unit)
        except NotAnAnswer as err:
            return Verdict("invalid", str(err))
        if math.isclose(value, self.expected, rel_tol=self.rel_tol, abs_tol=self.abs_tol):
            return Verdict("right", f"Right: {self.solution}.")
        direction = "too high" if value > self.expected else "too low"
        return Verdict("wrong", f"Not quite: {format_number(value)} is {direction}{self._how_far(value)}. "
                                "Try again, or take the hint.")

    def _how_far(self, value: float) -> str:
        if not self.expected or not value:
            return ""
        ratio = value / self.expected
        if ratio <= 0:
            return " (and of the wrong sign)"
        if 2 / 3 < ratio < 1.5:
            return f" (off by {abs(ratio - 1):.0%})"
        # factors of 2, 4, 8 are the classic slips: bits for bytes, one matrix of two, a dtype's width
        return f" (about {ratio:.3g}× the answer)" if ratio > 1 else f" (about 1/{1 / ratio:.3g} of the answer)"

    @property
    def solution(self) -> str:
        return f"{format_number(self.expected, self.digits)}{' ' + self.unit if self.unit else ''}"


# ---- choices -----------------------------------------------------------------------------------------


def _options_and_correct(answer: Any, allow_empty: bool) -> None:
    """Normalise ``options`` to a tuple and ``correct`` to a frozenset of strings; check they agree."""
    options = tuple(str(o) for o in answer.options)
    correct = answer.correct
    correct = frozenset([correct] if isinstance(correct, str) else (str(c) for c in correct))
    if (not correct and not allow_empty) or not correct <= set(options):
        raise ValueError(f"correct={sorted(correct)!r} must be among the options {list(options)!r}")
    object.__setattr__(answer, "options", options)
    object.__setattr__(answer, "correct", correct)


@dataclass(frozen=True)
class ChoiceAnswer:
    """One option out of several; ``correct`` is one option or a set of acceptable ones.

    ``feedback`` maps an option to what to tell someone who picks it (why it is right or wrong).
    """

    options: Sequence[str]
    correct: str | Iterable[str]
    feedback: Mapping[str, str] = field(default_factory=dict)
    kind: str = field(default="choice", init=False)

    def __post_init__(self) -> None:
        _options_and_correct(self, allow_empty=False)

    def check(self, raw: Any) -> Verdict:
        if raw is None or raw == "":
            return Verdict("invalid", "Pick one of the options first.")
        if raw not in self.options:
            return Verdict("invalid", f"“{html.escape(str(raw)[:40])}” is not one of the options: pick one of them.")
        note = self.feedback.get(raw, "")
        if raw in self.correct:
            return Verdict("right", f"Right. {note}".strip())
        return Verdict("wrong", f"Not this one. {note}".strip() + " Try another, or take the hint.")

    @property
    def solution(self) -> str:
        return " or ".join(o for o in self.options if o in self.correct)


@dataclass(frozen=True)
class ManyAnswer:
    """Tick every option that applies: right when the ticked set equals ``correct`` (which may be empty)."""

    options: Sequence[str]
    correct: Iterable[str]
    kind: str = field(default="many", init=False)

    def __post_init__(self) -> None:
        _options_and_correct(self, allow_empty=True)

    def check(self, raw: Any) -> Verdict:
        if raw is None or isinstance(raw, str):
            raw = [] if not raw else [raw]
        try:
            ticked = {str(o) for o in raw}
        except TypeError:
            return Verdict("invalid", "Tick the options that apply, then press Check.")
        unknown = ticked - set(self.options)
        if unknown:
            return Verdict("invalid", f"{html.escape(', '.join(sorted(unknown)))}: not among the options.")
        if ticked == self.correct:
            return Verdict("right", f"Right: {self.solution}.")
        found, missing, extra = len(ticked & self.correct), len(self.correct - ticked), len(ticked - self.correct)
        parts = [f"{found} right", f"{missing} missing"] + ([f"{extra} that do{'es' if extra == 1 else ''} not belong"]
                                                           if extra else [])
        return Verdict("wrong", f"Not yet: {', '.join(parts)}. Try again, or take the hint.")

    @property
    def solution(self) -> str:
        return ", ".join(o for o in self.options if o in self.correct) or "none of them"


# ---- bit patterns -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BitsAnswer:
    """A bit pattern of one lorakit format, most significant bit first; spaces, '_' and a 0b prefix are ignored.

    A wrong pattern is told which fields (sign, exponent, mantissa) differ and which value it encodes instead.
    """

    expected: str
    format: str  # a lorakit.formats name, e.g. "bf16"
    kind: str = field(default="bits", init=False)

    def parse(self, raw: Any) -> str:
        """The typed bits as a clean '0'/'1' string of the format's width; NotAnAnswer otherwise."""
        text = re.sub(r"[\s_]", "", str(raw or ""))
        text = text[2:] if text.lower().startswith("0b") else text
        width = len(self.expected)
        if not text:
            raise NotAnAnswer(f"Type the {width} bits (or click them), then press Check.")
        if stray := sorted(set(text) - {"0", "1"}):
            raise NotAnAnswer(f"Only 0 and 1, please (spaces are fine); found “{html.escape(''.join(stray)[:10])}”.")
        if len(text) != width:
            raise NotAnAnswer(f"That is {len(text)} bits; {self._label} has {width}. Count again.")
        return text

    def check(self, raw: Any) -> Verdict:
        try:
            bits = self.parse(raw)
        except NotAnAnswer as err:
            return Verdict("invalid", str(err))
        if bits == self.expected:
            return Verdict("right", f"Right: {self.solution}.")
        return Verdict("wrong", f"Not quite. {self._difference(bits)} Try again, or take the hint.")

    @property
    def _label(self) -> str:
        from lorakit.formats import get_format

        return get_format(self.format).name.upper()

    def _difference(self, bits: str) -> str:
        from lorakit.formats import explain, get_format

        fields = get_format(self.format).field_of_bit
        wrong: dict[str, int] = {}
        for got, want, name in zip(bits, self.expected, fields, strict=True):
            if got != want:
                wrong[name] = wrong.get(name, 0) + 1
        where = ", ".join(f"{n} {name} bit{'s' if n > 1 else ''}" for name, n in wrong.items())
        stored = explain(f"0b{bits}", self.format).stored_exact
        return f"Your bits make {stored}; {where} {'differs' if sum(wrong.values()) == 1 else 'differ'}."

    @property
    def solution(self) -> str:
        from lorakit.formats import get_format

        fields = get_format(self.format).field_of_bit
        groups, start = [], 0
        for i in range(1, len(fields) + 1):
            if i == len(fields) or fields[i] != fields[start]:
                groups.append(self.expected[start:i])
                start = i
        return " ".join(groups)


Answer = NumberAnswer | ChoiceAnswer | ManyAnswer | BitsAnswer
