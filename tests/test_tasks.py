"""The built-in tasks: same questions, same held-out split, each with its own exact-match and format-match rule."""

from __future__ import annotations

import json

import pytest

from lorakit.data import FACTS, TASKS, builtin_split, builtin_task, parse_json_line, score_answers


def test_the_facts_task_is_the_builtin_dataset():
    task = TASKS["builtin"]
    assert task.split("train") == builtin_split("train") and task.split("eval") == builtin_split("eval")


def test_json_task_asks_the_same_questions_and_holds_out_the_same_ones():
    facts, as_json = TASKS["builtin"], TASKS["builtin-json"]
    json_prompts = {e["prompt"] for e in as_json.examples()}
    assert json_prompts <= {e["prompt"] for e in facts.examples()}  # the table's questions, not the extras
    assert {e["prompt"] for e in as_json.split("eval")} == json_prompts & {e["prompt"] for e in facts.split("eval")}
    assert len(as_json.split("eval")) >= 30 and len(as_json.split("train")) >= 150


def test_json_answers_are_one_line_and_agree_with_the_facts_task():
    facts = {e["prompt"]: e["completion"] for e in TASKS["builtin"].examples()}
    for example in TASKS["builtin-json"].examples():
        line = example["completion"]
        assert "\n" not in line
        record = json.loads(line)
        name, (key, value) = record.pop("format"), record.popitem()
        assert name in FACTS and not record
        fact = facts[example["prompt"]]
        assert (("yes" if value else "no") if isinstance(value, bool) else float(value)) == (
            fact if fact in ("yes", "no") else float(fact)
        ), (example, key)


@pytest.mark.parametrize(
    ("answer", "exact", "form"),
    [
        ('{"format": "BF16", "mantissa_bits": 7}', True, True),
        ('{"mantissa_bits": 7.0, "format": "bf16"}\nmore text', True, True),  # key order, case, 7.0, first line
        ('{"format": "BF16", "mantissa_bits": 8}', False, True),
        ('{"format": "BF16", "fraction_bits": 7}', False, True),  # a wrong key is a wrong answer, not form
        ('{"format": "BF16", "mantissa_bits": "7"}', False, False),  # a string is not a number
        ('{"format": "BF16", "mantissa_bits": 7, "bias": 127}', False, False),
        ('{"name": "BF16", "mantissa_bits": 7}', False, False),
        ('{"format": "BF16", "has_inf": false}', False, True),
        ("BF16 has 7 mantissa bits.", False, False),
        ('{"format": "BF16", "mantissa_bits": 7', False, False),  # cut off
        ("[7]", False, False),
        ("", False, False),
    ],
)
def test_json_rules(answer, exact, form):
    task, reference = TASKS["builtin-json"], '{"format": "BF16", "mantissa_bits": 7}'
    assert task.matches(answer, reference) is exact
    assert task.format_matches(answer, reference) is form


def test_true_is_not_one():
    task = TASKS["builtin-json"]
    assert not task.matches('{"format": "FP16", "has_inf": 1}', '{"format": "FP16", "has_inf": true}')
    assert task.matches('{"format": "FP16", "has_inf": true}', '{"format": "FP16", "has_inf": true}')


@pytest.mark.parametrize(
    ("answer", "reference", "exact", "form"),
    [("7", "7", True, True), ("8.", "7", False, True), ("Yes", "no", False, True), ("7 bits", "7", False, False),
     ("BF16 has 7 mantissa bits", "7", False, False), ("", "yes", False, False)],
)  # fmt: skip
def test_facts_rules(answer, reference, exact, form):
    task = TASKS["builtin"]
    assert task.matches(answer, reference) is exact and task.format_matches(answer, reference) is form


def test_scores_and_lookup():
    task = builtin_task("builtin-json")
    refs = ['{"format": "FP16", "total_bits": 16}'] * 4
    answers = ['{"format": "FP16", "total_bits": 16}', '{"format": "FP16", "total_bits": 8}', "16", ""]
    assert score_answers(task, answers, refs) == {"exact_match": 0.25, "format_match": 0.5}
    assert score_answers(None, ["8.", "7 bits"], ["8", "7"]) == {"exact_match": 0.5, "format_match": None}
    assert builtin_task("data.jsonl") is None and builtin_task(["a list"]) is None
    assert parse_json_line("  \n") is None
    with pytest.raises(ValueError, match="as many answers as references"):
        score_answers(task, [], [])
    with pytest.raises(ValueError, match="split='test' is not allowed"):
        task.split("test")


@pytest.mark.parametrize("task", ["builtin", "builtin-json"])
def test_a_run_on_a_builtin_task_reports_both_scores(task, tiny_model_dir, tmp_path):
    from lorakit.training import TrainConfig, read_metrics, train

    config = TrainConfig(model=str(tiny_model_dir), dataset=task, device="cpu", max_steps=1, batch_size=2,
                         max_seq_length=96, eval_exact_match=True, max_new_tokens=2, output_dir=str(tmp_path))
    summary = train(config)
    assert summary.status == "completed", summary.message
    scores = (summary.exact_match_before, summary.exact_match_after,
              summary.format_match_before, summary.format_match_after)
    assert all(0.0 <= s <= 1.0 for s in scores)
    evals = [r for r in read_metrics(summary.output_dir) if r["kind"] == "eval"]
    assert len(evals) == 2 and all("format_match" in r for r in evals)
