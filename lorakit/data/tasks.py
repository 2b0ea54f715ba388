"""The built-in tasks: the same number-format questions, answered in two styles.

* ``"builtin"`` (facts): a bare number or yes/no ("7"). The base model answers in sentences; a short run
  learns the style, but the facts themselves are the hard part: 20 CPU steps get only some of them right.
* ``"builtin-json"``: one JSON line, ``{"format": "BF16", "mantissa_bits": 7}``. A fixed answer format the
  base model does not have, so the change is visible at a glance after 20-40 steps: the *format match*
  (one JSON object: the format's name and one number) rises from 0 to most answers, while the exact match
  still needs the facts (and the right key).

Both tasks ask the same questions and hold out the same ones (by a hash of the question), so a score on one
is comparable with the other. Pure Python: importing this loads no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lorakit.data.builtin import builtin_examples, format_questions, held_out, normalize_answer

# facts-task attribute -> the key the JSON task answers it under
JSON_KEYS = {
    "exponent": "exponent_bits",
    "mantissa": "mantissa_bits",
    "total": "total_bits",
    "bias": "bias",
    "max": "max_finite",
    "inf": "has_inf",
}


@dataclass(frozen=True)
class Task:
    """A built-in dataset with its own held-out split and its own rules for a right answer."""

    name: str
    description: str
    examples: Callable[[], list[dict[str, str]]]  # every {prompt, completion}, in a fixed order
    matches: Callable[[str, str], bool]  # (answer, reference) -> the answer is right
    format_matches: Callable[[str, str], bool]  # (answer, reference) -> the answer has the reference's form
    max_new_tokens: int  # enough to generate the longest reference answer in full

    def split(self, split: str) -> list[dict[str, str]]:
        """The 'train' or 'eval' (held-out) part; the same questions are held out in every task."""
        if split not in ("train", "eval"):
            raise ValueError(f"split={split!r} is not allowed; choose 'train' or 'eval'")
        want_held = split == "eval"
        return [ex for ex in self.examples() if held_out(ex["prompt"]) == want_held]


# ---- the facts task ------------------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _fact_matches(answer: str, reference: str) -> bool:
    return normalize_answer(answer) == normalize_answer(reference)


def _fact_format_matches(answer: str, reference: str) -> bool:
    """A bare number where the reference is a number, a bare yes/no where it is yes/no."""
    said, want = normalize_answer(answer), normalize_answer(reference)
    if want in ("yes", "no"):
        return said in ("yes", "no")
    return _is_number(said)


# ---- the JSON task -------------------------------------------------------------------------------------


def _json_value(answer: str) -> Any:
    """The facts task's text answer as a JSON value: a number, or true/false for yes/no."""
    if answer in ("yes", "no"):
        return answer == "yes"
    number = float(answer)
    return int(number) if number.is_integer() else number


def json_examples() -> list[dict[str, str]]:
    """The format-table questions answered as one JSON line: {"format": name, "<attribute key>": value}."""
    return [
        {"prompt": prompt, "completion": json.dumps({"format": name, JSON_KEYS[attribute]: _json_value(answer)})}
        for name, attribute, prompt, answer in format_questions()
    ]


def parse_json_line(answer: str) -> dict | None:
    """The answer's first line as a JSON object, or None when it is not one."""
    lines = answer.strip().splitlines()
    if not lines:
        return None
    try:
        value = json.loads(lines[0])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _same_value(said: Any, want: Any) -> bool:
    """Equal JSON values: numbers by value (7 == 7.0), strings ignoring case, true is not 1."""
    if isinstance(want, bool) or isinstance(said, bool):
        return said is want
    if isinstance(want, str) and isinstance(said, str):
        return said.strip().casefold() == want.strip().casefold()
    if isinstance(want, (int, float)) and isinstance(said, (int, float)):
        return said == want
    return False


def _json_matches(answer: str, reference: str) -> bool:
    said, want = parse_json_line(answer), json.loads(reference)
    return said is not None and said.keys() == want.keys() and all(_same_value(said[k], want[k]) for k in want)


def _json_format_matches(answer: str, reference: str) -> bool:
    """One JSON object naming the format (a string) and one fact (a number or true/false), right or not.

    The fact's key is not checked here: "fraction_bits" for "mantissa_bits" is a wrong answer, not a wrong form.
    """
    said = parse_json_line(answer)
    if said is None or len(said) != 2 or not isinstance(said.get("format"), str):
        return False
    (value,) = (v for k, v in said.items() if k != "format")
    return isinstance(value, (int, float))  # bool is an int too: true/false answers have the form


TASKS: dict[str, Task] = {
    "builtin": Task(
        name="builtin",
        description="number-format questions answered with a bare number or yes/no (the facts are the work)",
        examples=builtin_examples,
        matches=_fact_matches,
        format_matches=_fact_format_matches,
        max_new_tokens=6,
    ),
    "builtin-json": Task(
        name="builtin-json",
        description='number-format questions answered as one JSON line: {"format": "BF16", "mantissa_bits": 7}',
        examples=json_examples,
        matches=_json_matches,
        format_matches=_json_format_matches,
        max_new_tokens=28,
    ),
}


def builtin_task(dataset: Any) -> Task | None:
    """The built-in task a TrainConfig.dataset value names, or None for any other dataset."""
    return TASKS.get(dataset) if isinstance(dataset, str) else None


def score_answers(task: Task | None, answers: list[str], references: list[str]) -> dict[str, float | None]:
    """{"exact_match", "format_match"} as fractions 0..1; without a task, exact match on normalized text only."""
    if len(answers) != len(references) or not answers:
        raise ValueError(f"score_answers needs as many answers as references, at least one ({len(answers)} vs "
                         f"{len(references)})")
    matches = task.matches if task is not None else _fact_matches
    scores: dict[str, float | None] = {
        "exact_match": sum(map(matches, answers, references)) / len(answers),
        "format_match": None,
    }
    if task is not None:
        scores["format_match"] = sum(map(task.format_matches, answers, references)) / len(answers)
    return scores
