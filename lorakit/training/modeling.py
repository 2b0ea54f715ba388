"""Load the base model (optionally quantized) and its tokenizer, then add LoRA adapters with peft."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from lorakit.choices import torch_dtype
from lorakit.quantization import param_numel
from lorakit.quiet import no_progress_bars
from lorakit.training.config import TrainConfig
from lorakit.training.embedded import resolve_model
from lorakit.training.preflight import check_lengths, check_target_modules


def check_model_on_meta(config: TrainConfig, path: str) -> None:
    """Build the architecture on the meta device (no weights, no memory) and check targets and lengths."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(path, trust_remote_code=config.trust_remote_code)
    check_lengths(config, model_config)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(model_config, trust_remote_code=config.trust_remote_code)
    check_target_modules(skeleton, config.target_modules)


def load_base(config: TrainConfig, device: str, path: str | None = None):
    """Return (model, tokenizer). Frozen base weights are stored in the run's precision (or quantized)."""
    from transformers import AutoModelForCausalLM

    if path is None:
        path = resolve_model(config.model)
        check_model_on_meta(config, path)
    quant = config.quantization_config()
    kwargs = {"dtype": torch_dtype(config.prec.storage), "trust_remote_code": config.trust_remote_code}
    if quant is not None:
        # the quantizer runs while loading onto the target device, so place it now, not in accelerate
        # (this process's GPU: accelerate has made it the current one); under FSDP accelerate places the shards.
        kwargs["quantization_config"] = quant
        if config.distributed != "fsdp" or device == "cpu":
            kwargs["device_map"] = {"": torch.cuda.current_device() if device == "cuda" else "cpu"}
    with no_progress_bars():  # a "Loading weights" bar in every saved notebook tells nothing
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tokenizer = load_tokenizer(config, path)
    model.config.use_cache = False  # the KV cache only costs memory while training
    config.quant.prepare_loaded(model)  # what the backend needs before training (lorakit.quantization)
    return model, tokenizer


def load_tokenizer(config: TrainConfig, path: str):
    """The tokenizer of the model at ``path`` (a pad token set), loaded once per folder and reused."""
    return _load_tokenizer(path, config.trust_remote_code, _stamp(path))


def _stamp(path: str) -> float:
    """Newest modification time of a local folder's tokenizer files (0 for a hub id)."""
    files = list(Path(path).glob("tokenizer*")) if Path(path).is_dir() else []
    return max((f.stat().st_mtime for f in files), default=0.0)


def tokenizer_at(path: str, trust_remote_code: bool = False):
    """The tokenizer a run of the model at ``path`` uses (a pad token set), cached per folder (no config needed)."""
    return _load_tokenizer(path, trust_remote_code, _stamp(path))


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str, trust_remote_code: bool, stamp: float):
    """Tokenizers parse megabytes of JSON (seconds); notebooks that compare runs reuse one per folder."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def add_lora(model, config: TrainConfig, gradient_checkpointing: bool):
    """Freeze the base and add LoRA (peft). Adapter weights stay fp32 whatever the base dtype (autocast does the rest)."""
    from peft import get_peft_model

    if gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs; no need for enable_input_require_grads.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.2x renamed it; the old name warns
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    peft_model = get_peft_model(model, config.lora_config(), autocast_adapter_dtype=True)
    for param in peft_model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()  # fp16 training needs fp32 master weights for the GradScaler
    return peft_model


def count_params(model) -> tuple[int, int]:
    """(trainable, total) parameters as peft counts them, for any module (peft, DDP-wrapped or plain).

    A packed quantized parameter's ``numel()`` can be a fraction of the weights it holds: its quantization
    record counts it (``lorakit.quantization.param_numel``). Tied weights count once.
    """
    trainable = total = 0
    for param in model.parameters():
        n = param_numel(param)
        total += n
        trainable += n if param.requires_grad else 0
    return trainable, total
