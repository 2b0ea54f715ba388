"""Your own data, without guessing: what `dataset=` and `model=` accept is checked before any weights load and
before the run folder exists, and each refusal names the problem and the fix (issue 21, items 5 and 6)."""

from __future__ import annotations

import json

import pytest

import lorakit.training.parts as parts_module
from lorakit.training import TrainConfig, train
from lorakit.training.checks import HUB_TIMEOUT_S, check_model_name
from lorakit.training.records import DATASET_HELP, KINDS, check_records, record_kind, records_from


@pytest.fixture
def no_weights(monkeypatch):
    """Loading the base model's weights fails the test: every refusal below must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the base model's weights were loaded before the run was refused")

    monkeypatch.setattr(parts_module, "load_base", refuse)


@pytest.fixture
def in_tmp(monkeypatch, tmp_path):
    """The test runs in an empty folder, so a runs/<timestamp> folder left behind would be seen."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(config: TrainConfig, match: str, folder) -> str:
    """train(config) raises ValueError matching ``match``, and no run folder is left in ``folder``."""
    with pytest.raises(ValueError, match=match) as info:
        train(config)
    assert list(folder.iterdir()) == [], f"a refused run left {list(folder.iterdir())}"
    return str(info.value)


def test_wrong_record_shape_is_refused_before_loading_with_the_rename(run_config, no_weights, in_tmp):
    data = [{"question": f"What is {a} plus {a}?", "answer": str(2 * a)} for a in range(10)]
    message = refused(run_config(dataset=data, output_dir=None), "dataset record 0 has keys 'question', 'answer'",
                      in_tmp)
    assert "{'prompt': r['question'], 'completion': r['answer']}" in message  # the fix, spelled out


def test_a_bad_record_in_the_middle_is_named_by_its_index(run_config, no_weights, in_tmp):
    data = [{"prompt": "a", "completion": "b"}] * 5 + [{"prompt": "a"}] + [{"prompt": "c", "completion": "d"}]
    refused(run_config(dataset=data, output_dir=None), "dataset record 5 has keys 'prompt'", in_tmp)


def test_missing_file_is_refused_before_loading(run_config, no_weights, in_tmp):
    message = refused(run_config(dataset=str(in_tmp / "my_data.jsonl"), output_dir=None), "does not exist",
                      in_tmp)
    assert "my_data.jsonl" in message


@pytest.mark.parametrize("empty", [[], "file"])
def test_an_empty_dataset_is_refused_before_loading(run_config, no_weights, in_tmp, empty):
    if empty == "file":
        (in_tmp / "data").mkdir()
        empty = in_tmp / "data" / "empty.jsonl"
        empty.write_text("\n\n")
        folder_files = [in_tmp / "data"]
    else:
        folder_files = []
    with pytest.raises(ValueError, match="dataset is empty"):
        train(run_config(dataset=empty, output_dir=None))
    assert list(in_tmp.iterdir()) == folder_files  # no runs/ folder


def test_every_example_longer_than_max_seq_length_is_refused(run_config, no_weights, in_tmp, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = [{"prompt": "word " * 40 + f"{i}?", "completion": "yes"} for i in range(6)]
    # the oracle: each example's length under the chat template the trainer applies, counted here directly
    lengths = [len(tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]},
                                                 {"role": "assistant", "content": r["completion"]}],
                                                tokenize=True, return_dict=True)["input_ids"]) for r in data]
    assert min(lengths) > 32
    message = refused(run_config(dataset=data, max_seq_length=32, output_dir=None),
                      "every one of the 6 training examples is longer than max_seq_length=32", in_tmp)
    assert f"the shortest has {min(lengths)}" in message and f"at least {min(lengths)}" in message


def test_one_example_that_fits_is_enough(run_config, tmp_path):
    data = [{"prompt": "word " * 60, "completion": "yes"}] * 3 + [{"prompt": "hi", "completion": "yes"}] * 3
    summary = train(run_config(dataset=data, max_seq_length=48, max_steps=1))
    assert summary.status == "completed"


def test_a_builtin_task_with_a_cutoff_below_its_prompts_is_refused(run_config, no_weights, in_tmp):
    refused(run_config(dataset="builtin", max_seq_length=16, output_dir=None), "max_seq_length=16", in_tmp)


def test_a_misspelled_model_is_refused_in_one_quick_look(monkeypatch, no_weights, in_tmp):
    """Not a folder, not a preset, and the hub is asked once with a short timeout (no retries)."""
    import huggingface_hub

    calls = []

    def unreachable(url, timeout=None, **kwargs):
        calls.append((url, timeout))
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    message = refused(TrainConfig(model="SmolLM2-135M-Instrukt", output_dir=None, device="cpu"),
                      "model='SmolLM2-135M-Instrukt' is not a local folder, not 'embedded' and not a planner "
                      "preset, and huggingface.co cannot be reached", in_tmp)
    assert "Did you mean model='embedded'" in message
    assert calls == [(huggingface_hub.hf_hub_url("SmolLM2-135M-Instrukt", "config.json"), HUB_TIMEOUT_S)]


def test_offline_mode_asks_only_the_cache(monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda *a, **k: pytest.fail("asked the hub"))
    with pytest.raises(ValueError, match="not in the local Hugging Face cache"):
        check_model_name("someone/some-model")


def test_a_hub_id_that_answers_is_kept(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", lambda url, timeout=None, **k: object())
    assert check_model_name("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_model_names_that_are_paths_presets_or_folders_without_config(tmp_path):
    with pytest.raises(ValueError, match=r"model='\./nowhere': no such folder"):
        check_model_name("./nowhere")
    with pytest.raises(ValueError, match="planner preset.*model='HuggingFaceTB/SmolLM2-135M'"):
        check_model_name("SmolLM2-135M")
    with pytest.raises(ValueError, match="folder without a config.json"):
        check_model_name(str(tmp_path))


def test_record_shapes_are_the_documented_ones():
    assert [record_kind(r) for r in ("text", {"text": "t"}, {"prompt": "p", "completion": "c"},
                                     {"messages": [{"role": "user", "content": "q"},
                                                   {"role": "assistant", "content": "a"}]})] == [
        "text", "text", "pair", "messages"]
    assert all(shape in DATASET_HELP for shape in KINDS.values())
    assert check_records(["a", {"prompt": "p", "completion": "c"}, "b"]) == {"text": 2, "pair": 1}
    with pytest.raises(ValueError, match="no 'assistant' turn"):
        record_kind({"messages": [{"role": "user", "content": "q"}]})
    with pytest.raises(ValueError, match="'completion' must be a string"):
        record_kind({"prompt": "p", "completion": 3})
    with pytest.raises(ValueError, match="dataset record 2 is a int"):
        check_records(["a", "b", 3])


def test_files_and_containers_lorakit_reads_and_refuses(tmp_path):
    records = [{"prompt": "a", "completion": "b"}, {"text": "c"}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    assert records_from(tmp_path / "d.json") == records
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(ValueError, match="bad.jsonl' line 2 is not valid JSON"):
        records_from(tmp_path / "bad.jsonl")
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="reads .jsonl, .json, .txt files, not .csv"):
        records_from(tmp_path / "d.csv")
    with pytest.raises(ValueError, match=r"pick one split, e.g. dataset=ds\['train'\]"):
        records_from({"train": records, "test": records})  # a DatasetDict is a dict of splits


def test_the_dataset_field_is_documented_where_people_look():
    import lorakit

    assert DATASET_HELP in " ".join(lorakit.TrainConfig.__doc__.split())  # help(lorakit.TrainConfig)


def test_the_readme_says_what_the_code_does():
    """The README's "Your own data" section: every shape, and the defaults and timeout it names, as the code has
    them."""
    from pathlib import Path

    from lorakit.training.config import DEFAULTS
    from lorakit.training.records import FILE_SUFFIXES

    readme = Path(__file__).resolve().parents[1] / "README.md"
    section = readme.read_text(encoding="utf-8").split("## Your own data", 1)[1].split("\n## ", 1)[0]
    for shape in ('`{"text": "plain text"}`', '`{"prompt": "...", "completion": "..."}`',
                  '`{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}`'):
        assert shape in section
    assert all(f"`{suffix}`" in section for suffix in FILE_SUFFIXES)
    assert DEFAULTS["eval_split"] == 0.1 and "A tenth of the examples (`eval_split`)" in section
    assert DEFAULTS["preview_examples"] == 3 and "the first three (`preview_examples`)" in section
    assert HUB_TIMEOUT_S == 3.0 and "a 3 s timeout" in section
