"""compare_tokens against a manual forward pass with the adapter and one through the plain base model; from a run
folder, its pooled loss against the run's own eval loss before and after training; bad inputs; the HTML."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from test_lora_stats import randomize_b
from transformers import AutoModelForCausalLM, AutoTokenizer

from lorakit.training import read_metrics, train
from lorakit.training.token_compare import compare_tokens, load_run, pooled_loss
from lorakit.viz.lora import change_colour

TEXT = "the quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def live(tiny_model_dir):
    """(peft model with a random update, tokenizer, the plain base model loaded separately)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, target_modules="all-linear"))
    randomize_b(model, std=0.2)
    return model, tokenizer, AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()


def manual_logprobs(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    return logits.log_softmax(-1).gather(1, torch.tensor(ids[1:])[:, None]).squeeze(1)


def test_a_live_model_matches_manual_forward_passes_with_and_without_the_adapter(live):
    model, tokenizer, base = live
    model.train()  # the comparison runs in eval mode and puts the mode back
    result = compare_tokens(model, TEXT, tokenizer=tokenizer)
    assert model.training
    ids = tokenizer(TEXT)["input_ids"]
    model.eval()
    with_adapter = manual_logprobs(model, ids)
    without = manual_logprobs(base, ids)  # the base model on its own, not through peft
    assert result.token_ids == ids[1:] and "".join([result.first, *result.tokens]) == TEXT
    assert result.logprob_with == pytest.approx(with_adapter.tolist(), abs=1e-5)
    assert result.logprob_without == pytest.approx(without.tolist(), abs=1e-5)
    assert result.change == pytest.approx((with_adapter - without).tolist(), abs=1e-5)
    assert max(abs(c) for c in result.change) > 0.01  # the random update does change the predictions
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    assert result.loss_with == pytest.approx(F.cross_entropy(logits, torch.tensor(ids[1:])).item(), rel=1e-5)
    movers = result.biggest_movers(3)
    assert [abs(c) for _, _, c in movers] == sorted((abs(c) for c in result.change), reverse=True)[:3]
    assert all(result.tokens[pos - 1] == tok for pos, tok, _ in movers)


def test_a_record_is_scored_on_its_answer_as_the_trainer_scores_it(live):
    from lorakit.training.data import IGNORE, tokenize_record

    model, tokenizer, _ = live
    record = {"prompt": "What is two plus two?", "completion": "four"}
    result = compare_tokens(model, record, tokenizer=tokenizer)
    labels = tokenize_record(record, tokenizer).labels
    assert result.scored == [label != IGNORE for label in labels[1:]]
    assert 0 < result.n_scored < len(result.tokens)
    scored = [w for w, s in zip(result.logprob_with, result.scored, strict=True) if s]
    assert result.loss_with == pytest.approx(-sum(scored) / len(scored))


def test_from_a_run_folder_the_held_out_losses_are_the_runs_eval_losses(run_config):
    data = [{"prompt": f"What is {a} plus {a}?", "completion": f"{2 * a}"} for a in range(24)]
    summary = train(run_config(dataset=data, eval_split=0.25, max_steps=6, max_seq_length=64))
    evals = [r for r in read_metrics(summary.output_dir) if r["kind"] == "eval"]
    assert evals[0]["step"] == 0 and evals[-1]["step"] == 6  # before training (the base) and after it
    from lorakit.training.data import split_records

    held = split_records(data, 0.25)[1]
    run = load_run(summary.output_dir, device="cpu")
    with_, without = pooled_loss([compare_tokens(run, record) for record in held])
    assert with_ == pytest.approx(evals[-1]["eval_loss"], rel=1e-4)
    assert without == pytest.approx(evals[0]["eval_loss"], rel=1e-4)
    assert with_ < without
    single = compare_tokens(summary, held[0])  # a TrainSummary loads its run folder too
    assert single.logprob_with == pytest.approx(compare_tokens(run, held[0]).logprob_with, abs=1e-6)


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_empty_text_is_refused(live):
    model, tokenizer, _ = live
    for text in ("", "   \n"):
        with pytest.raises(ValueError, match="text is empty: give a sentence or a dataset record"):
            compare_tokens(model, text, tokenizer=tokenizer)


def test_text_longer_than_the_context_is_refused(live):
    model, tokenizer, _ = live
    long_text = " ".join(["word"] * 600)  # the tiny model's context is 512 positions
    n = len(tokenizer(long_text)["input_ids"])
    with pytest.raises(ValueError, match=f"text is {n} tokens, longer than the model's context of 512 tokens"):
        compare_tokens(model, long_text, tokenizer=tokenizer)


def test_a_model_without_lora_layers_is_refused(live):
    _, tokenizer, base = live
    with pytest.raises(ValueError, match="LlamaForCausalLM has no LoRA layers"):
        compare_tokens(base, TEXT, tokenizer=tokenizer)


def test_a_live_model_needs_its_tokenizer(live):
    with pytest.raises(ValueError, match="needs tokenizer="):
        compare_tokens(live[0], TEXT)


def test_a_run_folder_without_an_adapter_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(ValueError, match="is not a run folder: it has no config.json"):
        compare_tokens(tmp_path, TEXT)
    (tmp_path / "config.json").write_text(json.dumps({"model": str(tiny_model_dir)}))
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")  # a config, but no weights
    with pytest.raises(ValueError, match="has no saved adapter .*the run ended before saving one"):
        compare_tokens(tmp_path, TEXT)


# ---- the rendering -------------------------------------------------------------------------------------------------
def test_the_html_colours_rises_green_and_falls_red(live):
    model, tokenizer, _ = live
    result = compare_tokens(model, TEXT, tokenizer=tokenizer)
    page = result._repr_html_()
    assert page.count("<span") == len(result.tokens) + 1
    assert f"<b>{result.loss_without:.3f}</b> without the adapter &rarr; <b>{result.loss_with:.3f}</b>" in page
    up, down = change_colour(1.0, 1.0), change_colour(-1.0, 1.0)
    assert up != down and int(up[3:5], 16) > int(up[1:3], 16) and int(down[1:3], 16) > int(down[3:5], 16)
    assert change_colour(0.0, 1.0) == "#ffffff" and change_colour(5.0, 1.0) == up  # clipped at the scale
    rose = max(range(len(result.change)), key=result.change.__getitem__)
    assert f"title='log p: {result.logprob_without[rose]:.3f} → {result.logprob_with[rose]:.3f}" in page
