"""Keep known, harmless library notices and transformers' progress bars out of notebooks.

Each is addressed to someone other than a lorakit user, and a saved notebook would keep it as a pink
stderr block:

* bitsandbytes, on a CPU with AVX512-BF16, logs at import that the optional ``kernels`` package is missing;
  it then falls back to its own 4-bit kernels.
* bitsandbytes' 8-bit matmul logs "inputs will be cast from torch.float32 to float16" at every forward of
  every int8 layer when the run computes in fp32: hundreds of identical lines per step. LLM.int8 always
  multiplies in fp16; notebook 04 says so once.
* peft calls transformers' deprecated ``is_gradient_checkpointing`` (in ``get_peft_model``) and
  ``gradient_checkpointing_enable`` (in ``prepare_model_for_kbit_training``); transformers 5.2x warns with
  the path of its installed file.
* transformers draws a "Loading weights" bar for every model it loads (and a "Writing model shards" one when
  it saves), even a 135M one that takes a second; lorakit's own panel and logs say what is happening.

Only these exact notices are filtered; every other warning and log line passes. Pure standard library:
importing this module imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
KERNELS_NOTICE = "from kernels-community"
BNB_MATMUL_LOGGER = "bitsandbytes.autograd._functions"
INT8_CAST_NOTICE = "MatMul8bitLt: inputs will be cast from"
CHECKPOINTING_DEPRECATION = r"`(is_gradient_checkpointing|gradient_checkpointing_enable)` is deprecated"


class _DropKernelsNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return KERNELS_NOTICE not in record.getMessage()


class _DropInt8CastNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(INT8_CAST_NOTICE)


def install_filters() -> None:
    """Filter the notices above (idempotent). Must run before bitsandbytes is first imported."""
    for name, kind in ((BNB_CPU_LOGGER, _DropKernelsNotice), (BNB_MATMUL_LOGGER, _DropInt8CastNotice)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
    warnings.filterwarnings("ignore", message=CHECKPOINTING_DEPRECATION, category=FutureWarning)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' (and huggingface_hub's) progress bars off while the block runs, as they were after."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()
