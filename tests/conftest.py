"""Shared test fixtures.

* ``lorakit_cache_dir`` (session): the folder lorakit converts the embedded model into. It is
  $LORAKIT_CACHE_DIR when set (scripts/test.sh points it at .cache/lorakit so the ~40 s conversion happens
  once per machine), else a temporary folder for this session; either way the variable is set for the
  whole session, so every test and subprocess sees the same cache.
* ``embedded_tokenizer_dir`` (session): the embedded SmolLM2 tokenizer alone (built from the GGUF in a few
  seconds, no model conversion). Real vocabulary (49152) and chat template.
* ``tiny_model_dir`` (session): a random-initialised Llama-shaped model (hidden 64, 2 layers, 4 heads, 2 KV
  heads, MLP 128), built by tests/tiny.py's one builder, with that tokenizer, saved as a local HF folder:
  ``TrainConfig(model=tiny_model_dir)``.
  About 3.2 M parameters (mostly the tied 49152 x 64 embedding); a CPU step takes tens of milliseconds.
  Using it sets torch to one thread for the session: ops this small run faster on one thread, and on a
  busy 2-core box two threads spin against each other (measured: a 48x64 @ 64x64 matmul took 6 us on one
  thread, 1.4 ms on two).
* ``run_config`` (per test): ``run_config(**overrides)`` -> a TrainConfig of a few CPU steps of the tiny model
  (tests/tiny.py: ``tiny_run_config``), writing to tmp_path/run. Sinks: ``tiny.Recorder``.
* Hypothesis runs the "ci" profile (a bounded, fixed set of examples) unless HYPOTHESIS_PROFILE says otherwise.
* ``embedded_model_dir`` (session): the converted embedded SmolLM2-135M-Instruct folder (slow the first
  time: ~40 s; use it only in tests marked slow).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from tiny import save_tiny_model, tiny_run_config

# Hypothesis profiles. "ci" (the default, what scripts/test.sh runs): a bounded number of examples, drawn the same
# way every run (derandomize), so a suite run costs the same and never fails by chance; no example database in
# the checkout. "explore": many random examples, for hunting bugs by hand (HYPOTHESIS_PROFILE=explore).
settings.register_profile("ci", max_examples=40, derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=1000, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def record_updates(monkeypatch):
    """``record_updates()`` -> a list that, from then on, collects the model id of every state update a widget
    sends to the front end (what ``hold_sync`` batches into one message per widget)."""

    def start() -> list[str]:
        import ipywidgets

        sent: list[str] = []
        original = ipywidgets.Widget._send

        def record(self, msg, buffers=None):
            if msg.get("method") == "update":
                sent.append(self.model_id)
            return original(self, msg, buffers)

        monkeypatch.setattr(ipywidgets.Widget, "_send", record)
        return sent

    return start


@pytest.fixture(scope="session")
def lorakit_cache_dir(tmp_path_factory) -> Path:
    path = Path(os.environ.get("LORAKIT_CACHE_DIR") or tmp_path_factory.mktemp("lorakit-cache"))
    os.environ["LORAKIT_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def embedded_tokenizer_dir(lorakit_cache_dir) -> Path:
    from lorakit.training.embedded import embedded_tokenizer_dir as build

    return build()


@pytest.fixture(scope="session")
def tiny_model_dir(embedded_tokenizer_dir, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_tokenizer_dir)
    torch.set_num_threads(1)
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tokenizer, hidden_size=64, intermediate_size=128,
                           max_position_embeddings=512)


@pytest.fixture
def run_config(tiny_model_dir, tmp_path):
    """``run_config(**overrides) -> TrainConfig``: a few CPU steps of the tiny model (tests/tiny.py), in tmp_path."""

    def make(**overrides):
        return tiny_run_config(tiny_model_dir, tmp_path, **overrides)

    return make


@pytest.fixture(scope="session")
def embedded_model_dir(lorakit_cache_dir) -> Path:
    from lorakit.training.embedded import ensure_embedded

    return ensure_embedded()


# ----- tiers: which tests are slow, and every notebook run once --------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Tiers: mark notebook runs (nbval items) ``slow`` and ``notebook`` before ``-m`` selects; then run each
    notebook once.

    After selection, the main session's nbval run of the notebook that the Binder check runs is left out when
    that check is selected too: tests/test_binder.py runs it under nbval in the Binder environment (proving
    binder/ works and comparing its outputs there), so one full run executes every notebook exactly once.
    """
    from test_binder import BINDER_NOTEBOOK

    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.notebook)
    yield  # -m / -k deselection and the other plugins
    if not any("test_binder.py::test_a_notebook_runs" in item.nodeid for item in items):
        return
    dropped = [item for item in items if str(item.fspath).endswith(BINDER_NOTEBOOK)]
    if dropped:
        items[:] = [item for item in items if item not in dropped]
        config.hook.pytest_deselected(items=dropped)


def _eval_loss_from_adapter(model_dir, adapter_dir, config) -> float:
    """Recompute the held-out loss from the saved adapter, independently of the loop."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.data import build_batches, split_records

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), adapter_dir).eval()
    _, held = split_records(list(config.dataset), config.eval_split)
    batches = build_batches(config, tokenizer, held, pin=False)
    total = count = 0
    with torch.no_grad():
        for indices in batches.order(0):
            batch = batches.collate(indices)
            logits = model(**batch["inputs"], use_cache=False).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            total += torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="sum").item()
            count += batch["n_targets"]
    return total / count


@pytest.fixture
def eval_loss_from_adapter():
    """``f(model_dir, adapter_dir, config) -> float``: the held-out loss recomputed from a saved adapter."""
    return _eval_loss_from_adapter
