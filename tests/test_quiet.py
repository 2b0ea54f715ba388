"""lorakit.quiet: the two known library notices and the weight-loading bar stay out of notebooks; nothing else does."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

import lorakit  # noqa: F401  -- importing lorakit installs the filters
from lorakit import quiet
from lorakit.quantization import notices


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("notice", list(notices()), ids=lambda n: n.logger)
def test_only_the_known_notice_of_each_backend_is_dropped(notice):
    logger = logging.getLogger(notice.logger)
    handler = _Collect()
    logger.addHandler(handler)
    try:
        logger.warning("%s: and the rest of the line", notice.text)  # the notice, as the library writes it
        logger.warning("another warning of the same library")
    finally:
        logger.removeHandler(handler)
    assert handler.messages == ["another warning of the same library"]
    quiet.install_filters()  # idempotent: one filter however often it runs
    assert sum(isinstance(f, quiet.DropNotice) and f.notice == notice for f in logger.filters) == 1


def test_the_known_notices_are_the_libraries_own_lines():
    """Each notice covers the line its library writes (the start, or a phrase inside it), and not other lines."""
    kernels = "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'."
    cast = "MatMul8bitLt: inputs will be cast from torch.float32 to float16 during quantization"
    covered = {n.logger: n for n in notices()}
    assert covered["bitsandbytes.backends.cpu.ops"].drops(kernels)
    assert covered["bitsandbytes.autograd._functions"].drops(cast)
    assert not covered["bitsandbytes.autograd._functions"].drops("note: " + cast)  # matches the start only


def test_only_the_checkpointing_deprecations_peft_triggers_are_ignored():
    with warnings.catch_warnings(record=True) as caught:
        quiet.install_filters()  # catch_warnings restored the filters pytest had; put ours back on top
        for message in ("`is_gradient_checkpointing` is deprecated and will be removed in v6.",
                        "`gradient_checkpointing_enable` is deprecated and will be removed in v6.",
                        "something else is deprecated"):
            warnings.warn(message, FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_a_lora_model_on_a_tiny_base_prints_no_notice(tiny_model_dir):
    """A fresh interpreter, as a notebook kernel is: loading a model and adding LoRA writes nothing to stderr."""
    script = (
        "import lorakit\n"
        "from lorakit.training import TrainConfig\n"
        "from lorakit.training.modeling import add_lora, load_base\n"
        f"config = TrainConfig(model={str(tiny_model_dir)!r}, device='cpu')\n"
        f"model, _ = load_base(config, 'cpu', {str(tiny_model_dir)!r})\n"
        "add_lora(model, config, gradient_checkpointing=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_no_progress_bars_restores_the_setting():
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()  # other code in this process may have turned them off
    hf_logging.enable_progress_bar()
    with quiet.no_progress_bars():
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with quiet.no_progress_bars():
            pass
        assert not hf_logging.is_progress_bar_enabled()  # off before, off after
    finally:
        (hf_logging.enable_progress_bar if was_on else hf_logging.disable_progress_bar)()
