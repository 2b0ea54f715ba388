"""Exercise and Quiz driven through their state: enter answers, press the buttons, read status and feedback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lorakit
from lorakit.widgets.answers import BitsAnswer, ChoiceAnswer, ManyAnswer, NumberAnswer, parse_number
from lorakit.widgets.exercise import Exercise, Quiz


def number_exercise(quiz: Quiz | None = None, expected: float = 131072, **kwargs) -> Exercise:
    make = quiz.exercise if quiz is not None else Exercise
    return make(1, "LoRA parameters of one q_proj at r=16?", NumberAnswer(expected, **kwargs), hint="r·(in+out)")


@pytest.mark.parametrize(
    ("text", "value"),
    [("131072", 131072), ("131 072", 131072), ("131,072", 131072), ("1.3e5", 130000), ("2^-8", 2**-8),
     ("2**-8", 2**-8), ("2^(-8)", 2**-8), ("1/8", 0.125), ("−3", -3), ("16 GiB", 16), ("0,5", None)],
)  # fmt: skip
def test_numbers_are_read_as_people_type_them(text, value):
    if value is None:
        with pytest.raises(ValueError, match="not a number"):
            parse_number(text, unit="GiB")
    else:
        assert parse_number(text, unit="GiB") == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "   ", None, "abc", "12 apples", "inf", "nan", "1/0", "2^99999", "[1, 2]"])
def test_any_bad_number_gets_a_friendly_message_and_no_attempt(bad):
    exercise = number_exercise()
    verdict = exercise.submit(bad)
    assert verdict.status == "invalid" and exercise.status == "unanswered" and exercise.attempts == 0
    assert "⚠" in exercise.feedback.value and ("number" in verdict.message)


def test_right_and_wrong_numbers():
    exercise = number_exercise(rel_tol=0.01)
    assert exercise.submit("262144").status == "wrong"
    assert exercise.status == "wrong" and "too high" in exercise.feedback.value and "about 2× the answer" in exercise.feedback.value
    assert exercise.submit("128000").status == "wrong" and "too low (off by 2%)" in exercise.feedback.value
    assert exercise.submit("32768").status == "wrong" and "about 1/4 of the answer" in exercise.feedback.value
    assert exercise.submit("131,000").status == "right"  # within 1 %
    assert exercise.status == "right" and exercise.attempts == 4 and "✔" in exercise.feedback.value


def test_hint_and_reveal():
    exercise = number_exercise()
    assert exercise.hint_html.value == "" and exercise.solution_html.value == ""
    exercise.hint_button.click()
    assert exercise.hint_shown and "r·(in+out)" in exercise.hint_html.value
    exercise.reveal_button.click()
    assert exercise.status == "revealed" and "131\u202f072" in exercise.solution_html.value
    exercise.submit("131072")  # right after the reveal: told so, but it does not count as solved
    assert exercise.status == "revealed" and "✔" in exercise.feedback.value


def test_choice_exercise():
    answer = ChoiceAnswer(["yes", "no"], "no", feedback={"yes": "The planner says 71 GiB."})
    exercise = Exercise(7, "Fits a T4?", answer)
    assert exercise.submit(None).status == "invalid" and "Pick one" in exercise.feedback.value
    assert exercise.submit("maybe").status == "invalid"  # not an option: the control stays unset
    assert exercise.submit("yes").status == "wrong" and "71 GiB" in exercise.feedback.value
    exercise.choice.value = "no"  # what a click does
    exercise.check_button.click()
    assert exercise.status == "right" and exercise.attempts == 2


def test_choice_accepts_any_of_several_right_options():
    answer = ChoiceAnswer(["a", "b", "c"], {"a", "c"})
    assert answer.check("c").status == "right" and answer.solution == "a or c"
    with pytest.raises(ValueError, match="must be among the options"):
        ChoiceAnswer(["a"], "z")


def test_many_exercise_counts_right_missing_and_extra():
    exercise = Exercise(2, "Which overflow to inf?", ManyAnswer(["fp16", "bf16", "fp8_e5m2"], ["fp16", "fp8_e5m2"]))
    assert exercise.submit([]).status == "wrong" and "2 missing" in exercise.feedback.value
    assert exercise.submit(["fp16", "bf16"]).status == "wrong"
    assert "1 right, 1 missing, 1 that does not belong" in exercise.feedback.value
    assert exercise.submit(["nope"]).status == "wrong"  # unknown options are never ticked
    exercise.boxes[0].value = exercise.boxes[2].value = True
    exercise.check_button.click()
    assert exercise.status == "right"
    assert ManyAnswer(["a"], ["a"]).check(42).status == "invalid"  # not a collection: a message, no error


def test_bits_exercise_from_lorakit():
    e = lorakit.explain("0.1", "bf16")
    exercise = Exercise(1, "Bits of 0.1 in BF16", BitsAnswer(e.bits, "bf16"))
    for bad, message in (("", "Type the 16 bits"), ("0101", "That is 4 bits; BF16 has 16"),
                         ("0011 1101 1100 110x", "Only 0 and 1")):  # fmt: skip
        assert exercise.submit(bad).status == "invalid" and message in exercise.feedback.value
    wrong = "0" + e.field_bits["exponent"] + "1001100"  # last mantissa bit off: truncated, not rounded
    assert exercise.submit(wrong).status == "wrong"
    assert "1 mantissa bit differ" in exercise.feedback.value and "0.099609375" in exercise.feedback.value
    assert "".join(b.description for b in exercise.bit_buttons) == wrong  # typed bits show on the buttons
    exercise.bit_buttons[-1].click()  # the last bit
    assert exercise.text.value == e.bits
    exercise.check_button.click()
    assert exercise.status == "right" and "0 01111011 1001101" in exercise.feedback.value


def test_a_failing_checker_is_reported_not_raised():
    class Broken(NumberAnswer):
        def check(self, raw):
            raise RuntimeError("bug")

    exercise = Exercise(3, "?", Broken(1.0))
    assert exercise.submit("1").status == "invalid" and "tell the instructor" in exercise.feedback.value


def test_quiz_keeps_the_score_of_its_own_exercises():
    quiz, other = Quiz("Workshop"), Quiz("Other notebook")
    first = number_exercise(quiz)
    second = quiz.exercise(2, "Fits?", ChoiceAnswer(["yes", "no"], "no"))
    third = quiz.exercise(3, "Bits?", NumberAnswer(7))
    assert quiz.score == (0, 3) and "0 of 3 solved" in quiz.score_html.value
    first.submit("131072")
    second.submit("yes")
    third.reveal_button.click()
    assert quiz.score == (1, 3) and "1 of 3 solved, 1 revealed" in quiz.score_html.value
    second.submit("no")
    assert quiz.score == (2, 3) and other.score == (0, 0)
    assert quiz.answer_key().splitlines() == ["Exercise 1: 131\u202f072", "Exercise 2: no", "Exercise 3: 7"]
    replaced = quiz.exercise(3, "Bits again?", NumberAnswer(8))  # re-running a cell replaces its exercise
    third.submit("7")
    assert quiz.score == (2, 3) and replaced.status == "unanswered"


ANY_INPUT = st.one_of(
    st.none(), st.text(max_size=60), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.lists(st.text(max_size=8), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["", "   ", "abc", "1e999", "-0", "0b", "0b" + "1" * 16, "1" * 15, "1" * 17, "½", "٣", "\x00"]),
)  # fmt: skip
ANSWERS = {
    "number": NumberAnswer(131072, unit="GiB"),
    "choice": ChoiceAnswer(["yes", "no"], "no"),
    "many": ManyAnswer(["fp16", "bf16"], ["fp16"]),
    "bits": BitsAnswer(lorakit.explain("0.1", "bf16").bits, "bf16"),
}


@settings(deadline=None)  # examples: the Hypothesis profile (tests/conftest.py)
@given(raw=ANY_INPUT)
def test_no_input_makes_a_check_raise(raw):
    for answer in ANSWERS.values():
        verdict = answer.check(raw)
        assert verdict.status in ("right", "wrong", "invalid") and verdict.message


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [("number", "", "Type a number"), ("number", "   ", "Type a number"), ("number", "twelve", "not a number"),
     ("number", "12 GB", "not a number"), ("choice", "", "Pick one"), ("bits", "   ", "Type the 16 bits"),
     ("bits", "abc", "Only 0 and 1"), ("bits", "1" * 15, "That is 15 bits; BF16 has 16"),
     ("bits", "0b" + "1" * 17, "That is 17 bits")],
)  # fmt: skip
def test_empty_letters_and_wrong_lengths_get_a_friendly_message_in_the_widget(kind, raw, message):
    exercise = Exercise(1, "?", ANSWERS[kind])
    assert exercise.submit(raw).status == "invalid" and exercise.status == "unanswered" and exercise.attempts == 0
    assert "⚠" in exercise.feedback.value and message in exercise.feedback.value
    if kind == "bits":  # the bit buttons keep their last well-formed pattern
        assert {b.description for b in exercise.bit_buttons} == {"0"}
