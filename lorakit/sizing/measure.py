"""Measure what a real training step holds, component by component and at its peak (the planner's oracles).

``measure_training_step``: weights, gradients and optimizer state summed from the tensors themselves
(quantization state included, shared storage counted once); activations and logits are the tensors autograd
saves for backward (``torch.autograd.graph.saved_tensors_hooks``), deduplicated by storage, parameters excluded.

``measure_peak_step``: the most memory held at any moment of a step, as ``torch.cuda.max_memory_allocated``
reports it on CUDA; on the CPU a dispatch-mode tracker adds every new tensor storage when an operation
creates it and subtracts it when it is freed, on top of the weights and optimizer states already there.
Both run on the model's device: the batch is moved there.
"""

from __future__ import annotations

from typing import Any


def _storage_key(t: Any) -> int:
    return t.untyped_storage().data_ptr()


def _unique_bytes(tensors: Any, skip: set[int] | None = None) -> int:
    """Bytes of the distinct storages behind ``tensors`` (numel x element size when storage is unavailable)."""
    seen, total = set(skip or ()), 0
    for t in tensors:
        key = _storage_key(t)
        if key in seen:
            continue
        seen.add(key)
        total += t.untyped_storage().nbytes()
    return total


def unique_bytes(tensors: Any) -> int:
    """Bytes of the distinct storages behind ``tensors`` (views and shared storage counted once)."""
    return _unique_bytes(tensors)


def weight_tensors(model: Any, trainable: bool) -> list[Any]:
    """Parameters of the chosen kind as the tensors that hold them (quantization state included)."""
    from lorakit.quantization import stored_tensors

    return [t for p in model.parameters() if p.requires_grad == trainable for t in stored_tensors(p)]


def measure_training_step(model: Any, input_ids: Any, optimizer: Any, autocast: Any = None) -> dict[str, int]:
    """Run one forward/backward/step and return bytes per component, as the planner names them.

    ``autocast``: a ``torch.dtype`` to run the forward under ``torch.autocast`` (mixed precision), or None.
    """
    import contextlib

    import torch

    input_ids = input_ids.to(model_device(model))
    frozen = weight_tensors(model, trainable=False)
    trainable = weight_tensors(model, trainable=True)
    param_keys = {_storage_key(t) for t in frozen + trainable}
    saved: dict[str, list[Any]] = {"activations": [], "logits": []}
    phase = {"now": "activations"}
    recompute: dict[int, list[Any]] = {}
    layers = _decoder_layers(model)
    current = {"layer": None, "backward": False}

    def pack(t: Any) -> Any:
        if _storage_key(t) not in param_keys:
            if current["backward"]:  # a checkpointed layer being recomputed
                recompute.setdefault(current["layer"], []).append(t)
            else:
                saved[phase["now"]].append(t)
        return t

    handles = [model.get_output_embeddings().register_forward_hook(
        lambda *_: phase.__setitem__("now", "logits"))]
    # hooks on a layer's children also fire when backward recomputes a checkpointed layer
    handles += [child.register_forward_pre_hook(lambda _m, _a, i=i: current.__setitem__("layer", i))
                for i, layer in enumerate(layers) for child in layer.children()]
    try:
        mixed = (torch.autocast(input_ids.device.type, dtype=autocast) if autocast is not None
                 else contextlib.nullcontext())
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with mixed:
                out = model(input_ids=input_ids, labels=input_ids)
            current["backward"] = True
            activations = _unique_bytes(saved["activations"])
            logits = _unique_bytes(saved["logits"] + [out.logits], skip={_storage_key(t) for t in saved["activations"]})
            out.loss.backward()
    finally:
        for h in handles:
            h.remove()
    optimizer.step()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    states = [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v)]
    return {
        "weights_bytes": _unique_bytes(frozen),
        "adapter_bytes": _unique_bytes(trainable),
        "gradients_bytes": _unique_bytes(grads),
        "optimizer_bytes": _unique_bytes(states),
        "activations_bytes": activations + max(map(_unique_bytes, recompute.values()), default=0),
        "logits_bytes": logits,
    }


def model_device(model: Any) -> Any:
    """The device of the model's first parameter (where its batches must go)."""
    return next(model.parameters()).device


def plain_loss(model: Any, input_ids: Any) -> Any:
    """The loss of a plain transformers step: the model's own head and cross-entropy, output dropped."""
    return model(input_ids=input_ids, labels=input_ids).loss


def measure_peak_step(model: Any, input_ids: Any, optimizer: Any, autocast: Any = None,
                      loss_fn: Any = plain_loss) -> int:
    """Peak bytes held during one training step after a warm-up step (forward, backward, step, zero_grad).

    The warm-up step creates the optimizer state, as every later step finds it. ``loss_fn(model, input_ids)``
    returns the loss (default: the model's own head). CUDA: ``torch.cuda.max_memory_allocated()``;
    CPU: weights, buffers and optimizer states plus the most that the step's new tensors held at once.
    """
    import torch

    input_ids = input_ids.to(model_device(model))
    device = input_ids.device.type

    def step() -> None:
        mixed = (torch.autocast(device, dtype=autocast) if autocast is not None else _null())
        with mixed:
            loss = loss_fn(model, input_ids)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    return measure_step_peak(model, optimizer, step, known=[input_ids])


def measure_step_peak(model: Any, optimizer: Any, step: Any, known: Any = ()) -> int:
    """Peak bytes held during one call of ``step()``, which trains ``model`` with ``optimizer`` (no warm-up:
    call it after one, so that the optimizer state exists).

    CUDA: ``torch.cuda.max_memory_allocated()`` over the call. CPU: the weights, buffers and optimizer states
    plus the most that the tensors created inside the call held at once; ``known`` tensors (the batch) that
    existed before it are neither.
    """
    import torch

    if model_device(model).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    static = weight_tensors(model, trainable=False) + weight_tensors(model, trainable=True) + list(model.buffers())
    static += [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v)]
    tracker = _peak_tracker({_storage_key(t) for t in static + list(known)})
    with tracker:
        step()
    return _unique_bytes(static) + tracker.peak


def release_cuda_memory() -> int:
    """Free what torch caches on the GPU, cuBLAS workspaces included; the bytes still allocated after it.

    A step's own workspaces are then allocated, and counted, inside the step measured.
    """
    import gc

    import torch

    gc.collect()
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        clear()
    torch.cuda.empty_cache()
    return int(torch.cuda.memory_allocated())


def _null() -> Any:
    import contextlib

    return contextlib.nullcontext()


def _peak_tracker(known: set[int]) -> Any:
    """A TorchDispatchMode that follows the bytes of every storage created under it until it is freed.

    ``known``: storages (by data pointer) that existed before, such as the weights; views of them are free.
    """
    import weakref

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.weak import WeakIdKeyDictionary

    class PeakTracker(TorchDispatchMode):
        def __init__(self, known: set[int]) -> None:
            super().__init__()
            self.known, self.current, self.peak = known, 0, 0
            self.finalizers = WeakIdKeyDictionary()  # storage -> its finalizer (a weak key: no resurrection)

        def _freed(self, nbytes: int) -> None:
            self.current -= nbytes

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor) or t.is_meta:
                    continue
                storage = t.untyped_storage()
                if storage.data_ptr() in self.known or storage in self.finalizers:
                    continue  # a view of a tensor that existed before the step, or one already counted
                nbytes = storage.nbytes()
                self.finalizers[storage] = weakref.finalize(storage, self._freed, nbytes)
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            return out

    return PeakTracker(known)


def _decoder_layers(model: Any) -> list[Any]:
    """The repeated decoder blocks (the longest ModuleList in the model)."""
    import torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return list(max(lists, key=len)) if lists else []


def tiny_model(
    preset: Any,
    *,
    quantization: str = "none",
    double_quant: bool = True,
    precision: str = "fp32",
    attention: str | None = None,
    device: str = "cpu",
    **overrides: Any,
) -> Any:
    """A randomly initialised small model with a preset's structure, optionally quantized (any lorakit option).

    It lives on ``device``; a quantizer would otherwise put a quantized model on the GPU whenever there is one.
    ``double_quant`` applies where the option offers it.
    """
    import tempfile

    from transformers import AutoConfig, AutoModelForCausalLM

    from lorakit.choices import PRECISIONS, QUANTIZATIONS, choose, torch_dtype
    from lorakit.sizing.architecture import shrink_config

    dtype = torch_dtype(PRECISIONS[choose("precision", "precision", precision, PRECISIONS)].storage)
    data = shrink_config(preset, **overrides)
    if attention is not None:  # else transformers' default for the family (Gemma-2 has no SDPA path)
        data["attn_implementation"] = attention
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    quant = QUANTIZATIONS[choose("quantization", "quantization", quantization, QUANTIZATIONS)]
    if not quant.quantized:
        return model.to(device)
    qconfig = quant.transformers_config(double_quant and quant.double_quant, dtype, sharded=False)
    with tempfile.TemporaryDirectory() as tmp:  # the quantizer runs while loading
        model.save_pretrained(tmp)
        extra = {"attn_implementation": attention} if attention is not None else {}  # not saved in config.json
        model = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=qconfig, dtype=dtype,
                                                     device_map={"": device}, **extra)
    quant.prepare_loaded(model)  # trainable as the trainer loads it (lorakit.quantization)
    return model
