"""liger-kernel on CUDA: its fused linear cross-entropy for lorakit's fused head, its kernels in the decoder blocks.

liger-kernel (``pip install 'lorakit[gpu]'``) is Triton code: CUDA only, imported lazily, and asked for
without CUDA it is a clear error. ``liger_applied(model)`` tells code that compiles the decoder blocks
whether liger's kernels are in them: the two stay apart (liger's kernels under torch.compile crashed
transformers' Trainer on an H200).
"""

from __future__ import annotations

import sys
import weakref

import torch

from lorakit.training.data import IGNORE
from lorakit.training.logits import LogitTransform

__all__ = ["LIGER_HINT", "apply_liger_kernels", "base_model", "liger_applied", "liger_cannot", "liger_head_loss",
           "liger_missing_reason", "require_liger"]

LIGER_HINT = "pip install 'lorakit[gpu]' (liger-kernel, which needs triton and a CUDA GPU)"
_LIGER_MARK = "_lorakit_liger_kernels"  # attribute on the base model: the liger kernels applied to it


def base_model(model):
    """The transformers model under DDP / accelerate wrappers and peft (which adapts it in place)."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def liger_missing_reason() -> str | None:
    """Why liger-kernel cannot be used in this environment (None: it imports)."""
    try:
        import liger_kernel.transformers  # noqa: F401 -- imports triton
    except Exception as exc:  # noqa: BLE001 -- ImportError, or triton failing to find a GPU driver
        return f"liger-kernel is not installed or does not import ({type(exc).__name__}: {exc}); {LIGER_HINT}"
    return None


def require_liger(device: str):
    """liger-kernel's ``transformers`` module; ValueError off CUDA, ImportError with the install hint if missing."""
    if device != "cuda":
        raise ValueError(
            f"liger-kernel's kernels run only on CUDA GPUs (they are Triton kernels); this run is on {device!r}. "
            "lorakit's own chunked head (loss_kernel='fused') runs on every device."
        )
    try:
        import liger_kernel.transformers as liger
    except ImportError as exc:
        raise ImportError(f"liger-kernel is not installed: {LIGER_HINT}") from exc
    return liger


def _plain_linear(head: torch.nn.Module) -> torch.nn.Linear | None:
    """The nn.Linear a head computes with (a modules_to_save wrapper's active copy); None for an adapted head."""
    if type(head) is torch.nn.Linear:
        return head
    copies = getattr(head, "modules_to_save", None)
    if isinstance(copies, torch.nn.ModuleDict) and not head.disable_adapters and head.active_adapters:
        inner = copies[head.active_adapters[0]] if head.active_adapters[0] in copies else None
        return inner if type(inner) is torch.nn.Linear else None
    return None


def liger_cannot(head: torch.nn.Module, transform: LogitTransform) -> str | None:
    """Why liger's fused linear cross-entropy cannot compute this head (None: it can)."""
    linear = _plain_linear(head)
    if linear is None:
        return f"liger needs a plain Linear output head and this one is a {type(head).__name__} (LoRA on lm_head)"
    if transform.scale != 1.0 and linear.bias is not None:
        return "liger cannot scale the logits of a head with a bias"
    return None


def liger_head_loss(hidden: torch.Tensor, targets: torch.Tensor, head: torch.nn.Module,
                    transform: LogitTransform | None = None) -> torch.Tensor:
    """Summed fp32 cross-entropy by liger-kernel's fused linear cross-entropy (a plain Linear head, CUDA)."""
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    if transform is None:
        transform = LogitTransform()
    why_not = liger_cannot(head, transform)
    if why_not is not None:
        raise ValueError(why_not)
    linear = _plain_linear(head)
    if transform.scale != 1.0:  # (s h) W^T = s (h W^T) when there is no bias
        hidden = hidden * transform.scale
    return liger_fused_linear_cross_entropy(hidden, linear.weight, targets, bias=linear.bias, ignore_index=IGNORE,
                                            reduction="sum", softcap=transform.softcap)


def apply_liger_kernels(model, device: str) -> tuple[str, ...]:
    """Apply liger's kernels inside the decoder blocks (RMSNorm, SwiGLU or GeGLU, RoPE) where it has them.

    liger patches the model instance, and also names in its transformers modeling module (the classes, so
    that later models would be built with liger's; RoPE's function, which the attention looks up at each
    call). The classes go back at once, so later models of that architecture are built plain; RoPE's
    function goes back when this model is freed. Returns the kernels applied (``liger_applied`` reports
    them). Keep them out of torch.compile'd blocks: liger's Triton kernels under torch.compile crashed
    transformers' Trainer on an H200.
    """
    require_liger(device)
    import inspect

    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    base = base_model(model)
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(getattr(base.config, "model_type", None))
    if apply is None:
        return ()
    accepted = inspect.signature(apply).parameters
    # lorakit computes the loss itself: liger must not replace the model's forward or its cross-entropy
    wanted = {"rms_norm": True, "swiglu": True, "geglu": True, "rope": True,
              "cross_entropy": False, "fused_linear_cross_entropy": False}
    kwargs = {name: on for name, on in wanted.items() if name in accepted}
    module = sys.modules[type(base).__module__]
    before = dict(vars(module))
    apply(model=base, **kwargs)
    changed = {name: (old, vars(module)[name]) for name, old in before.items() if vars(module).get(name) is not old}
    _restore(module, {name: pair for name, pair in changed.items() if isinstance(pair[0], type)})
    weakref.finalize(base, _restore, module, {n: p for n, p in changed.items() if not isinstance(p[0], type)})
    applied = tuple(name for name, on in kwargs.items() if on)
    setattr(base, _LIGER_MARK, applied)
    return applied


def _restore(module, changed: dict[str, tuple]) -> None:
    """Put back the module's names that still hold liger's replacement: {name: (original, replacement)}."""
    for name, (original, replacement) in changed.items():
        if getattr(module, name, None) is replacement:
            setattr(module, name, original)


def liger_applied(model) -> tuple[str, ...]:
    """The liger kernels inside this model's decoder blocks (empty: none), e.g. ("rms_norm", "swiglu", "rope").

    Code that compiles the decoder blocks asks this first: liger's kernels and compiled blocks stay apart.
    Besides what ``apply_liger_kernels`` applied to this model, liger's code found in it counts too: a module
    of a liger class or with a liger forward (named by its class), a liger function left in its modeling
    module by another model (RoPE's is process-wide: "rope").
    """
    base = base_model(model)
    found = list(getattr(base, _LIGER_MARK, ()))
    if not found:  # not applied by lorakit: look for liger's code in the model itself
        found = [type(sub).__name__ for sub in base.modules()
                 if _from_liger(type(sub)) or _from_liger(sub.__dict__.get("forward"))]
    module = sys.modules.get(type(base).__module__)
    found += ["rope" if "rotary" in name else name for name, value in (vars(module).items() if module else ())
              if not isinstance(value, type) and _from_liger(value)]
    return tuple(dict.fromkeys(found))


def _from_liger(obj) -> bool:
    """Whether a class, function or bound method is liger-kernel's code."""
    return str(getattr(getattr(obj, "__func__", obj), "__module__", None) or "").startswith("liger_kernel")
