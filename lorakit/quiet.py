"""Keep known, harmless library notices and transformers' progress bars out of notebooks.

Each is addressed to someone other than a lorakit user, and a saved notebook would keep it as a pink
stderr block:

* the quantization backends' known notices, each listed with its reason in the backend's record
  (``lorakit.quantization``: ``Quantization.notices``), e.g. a missing optional kernel package at import, or
  one identical line per layer and step;
* peft calls transformers' deprecated ``is_gradient_checkpointing`` (in ``get_peft_model``) and
  ``gradient_checkpointing_enable`` (in ``prepare_model_for_kbit_training``); transformers 5.2x warns with
  the path of its installed file.
* transformers draws a "Loading weights" bar for every model it loads (and a "Writing model shards" one when
  it saves), even a 135M one that takes a second; lorakit's own panel and logs say what is happening.

Only these exact notices are filtered; every other warning and log line passes. Importing this module imports
nothing heavy (the records are pure Python).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

from lorakit.quantization import LogNotice, notices

CHECKPOINTING_DEPRECATION = r"`(is_gradient_checkpointing|gradient_checkpointing_enable)` is deprecated"


class DropNotice(logging.Filter):
    """Drops the log records one known notice covers."""

    def __init__(self, notice: LogNotice) -> None:
        super().__init__()
        self.notice = notice

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.notice.drops(record.getMessage())


def install_filters() -> None:
    """Filter the notices above (idempotent). Must run before a backend's library is first imported."""
    for notice in notices():
        logger = logging.getLogger(notice.logger)
        if not any(isinstance(f, DropNotice) and f.notice == notice for f in logger.filters):
            logger.addFilter(DropNotice(notice))
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
