"""Measure what a real training step holds, component by component (the oracle for the planner).

Weights, gradients and optimizer state are summed from the tensors themselves (quantization state
included, shared storage counted once); activations and logits are the tensors autograd saves for
backward (``torch.autograd.graph.saved_tensors_hooks``), deduplicated by storage, parameters excluded.
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


def weight_tensors(model: Any, trainable: bool) -> list[Any]:
    """Parameters (and, when frozen, bitsandbytes quantization state) of the chosen kind."""
    import torch

    out = []
    for p in model.parameters():
        if p.requires_grad != trainable:
            continue
        out.append(p)
        state = getattr(p, "quant_state", None)  # Params4bit: absmax, codebook, nested state
        if state is not None:
            out += [t for t in (state.absmax, state.code, getattr(state, "offset", None)) if torch.is_tensor(t)]
            if getattr(state, "state2", None) is not None:
                out += [state.state2.absmax, state.state2.code]
        scb = getattr(p, "SCB", None)  # Int8Params: one fp32 scale per output row
        if torch.is_tensor(scb):
            out.append(scb)
    return out


def measure_training_step(model: Any, input_ids: Any, optimizer: Any, autocast: Any = None) -> dict[str, int]:
    """Run one forward/backward/step and return bytes per component, as the planner names them.

    ``autocast``: a ``torch.dtype`` to run the forward under ``torch.autocast`` (mixed precision), or None.
    """
    import contextlib

    import torch

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
    **overrides: Any,
) -> Any:
    """A randomly initialised small model with a preset's structure, optionally bitsandbytes-quantized."""
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    from lorakit.sizing.architecture import shrink_config

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    data = shrink_config(preset, **overrides)
    if attention is not None:  # else transformers' default for the family (Gemma-2 has no SDPA path)
        data["attn_implementation"] = attention
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if quantization == "none":
        return model
    if quantization == "int8":
        bnb = BitsAndBytesConfig(load_in_8bit=True)
    else:
        bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantization,
                                 bnb_4bit_use_double_quant=double_quant, bnb_4bit_compute_dtype=dtype)
    with tempfile.TemporaryDirectory() as tmp:  # bitsandbytes quantizes while loading
        model.save_pretrained(tmp)
        extra = {"attn_implementation": attention} if attention is not None else {}  # not saved in config.json
        return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=bnb, dtype=dtype, **extra)
