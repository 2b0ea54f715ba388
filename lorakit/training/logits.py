"""What a model does to its output head's logits before the softmax (scale, soft cap), as one small record.

Both loss heads read it: lorakit's chunked head (``fused_head``) and liger-kernel's (``liger``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LogitTransform", "logit_transform"]


@dataclass(frozen=True)
class LogitTransform:
    """What a model does to its head's output before the softmax: ``cap * tanh(logits * scale / cap)``.

    ``scale`` is Cohere's ``logit_scale`` or 1 / Granite's ``logits_scaling``; ``softcap`` is Gemma-2's
    ``final_logit_softcapping`` (None: none). Applied to fp32 logits, in the model's own order.
    """

    scale: float = 1.0
    softcap: float | None = None

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.softcap is None

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            logits = logits * self.scale
        if self.softcap is not None:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def logit_transform(model_config) -> LogitTransform:
    """The transform a transformers config names (the text config of a multimodal one)."""
    config = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    scale = float(getattr(config, "logit_scale", None) or 1.0)
    scaling = getattr(config, "logits_scaling", None)
    if scaling:
        scale /= float(scaling)
    return LogitTransform(scale, getattr(config, "final_logit_softcapping", None) or None)
