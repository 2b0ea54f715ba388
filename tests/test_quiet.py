"""lorakit.quiet: the two known library notices and the weight-loading bar stay out of notebooks; nothing else does."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import lorakit  # noqa: F401  -- importing lorakit installs the filters
from lorakit import quiet


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_only_the_kernels_notice_of_bitsandbytes_is_dropped():
    logger = logging.getLogger(quiet.BNB_CPU_LOGGER)
    handler = _Collect()
    logger.addHandler(handler)
    try:
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure "
                       "you already `pip install kernels`", "No module named 'kernels'")
        logger.warning("another bitsandbytes warning")
    finally:
        logger.removeHandler(handler)
    assert handler.messages == ["another bitsandbytes warning"]
    quiet.install_filters()  # idempotent: one filter however often it runs
    assert sum(isinstance(f, quiet._DropKernelsNotice) for f in logger.filters) == 1


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


def test_only_the_int8_cast_notice_of_bitsandbytes_is_dropped():
    logger = logging.getLogger(quiet.BNB_MATMUL_LOGGER)
    handler = _Collect()
    logger.addHandler(handler)
    try:
        logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "torch.float32")
        logger.warning("another 8-bit warning")
    finally:
        logger.removeHandler(handler)
    assert handler.messages == ["another 8-bit warning"]
