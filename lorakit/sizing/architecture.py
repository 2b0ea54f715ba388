"""Describe a causal-LM architecture without its weights: linear layers, other parameters, shapes.

The module tree is built on torch's meta device (no memory for weights), so even a 70B model is
described in well under a second once transformers is imported; descriptions are cached per config.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).with_name("presets")
PRESETS: tuple[str, ...] = tuple(sorted(p.stem for p in PRESET_DIR.glob("*.json")))


@dataclass(frozen=True)
class LinearLayer:
    """One Linear (or GPT-2 Conv1D) layer: full module name, shape in features, bias."""

    name: str
    kind: str  # "Linear" or "Conv1D"
    in_features: int
    out_features: int
    bias: bool
    tied: bool = False  # weight shared with the input embedding (tied lm_head): counted there, once

    @property
    def suffix(self) -> str:
        """Last component of the module name, e.g. ``q_proj``."""
        return self.name.rsplit(".", 1)[-1]

    @property
    def weight_params(self) -> int:
        """Weight elements, d_out x d_in."""
        return self.in_features * self.out_features

    @property
    def params(self) -> int:
        """Weight plus bias elements this layer owns (a tied weight belongs to the embedding)."""
        return (0 if self.tied else self.weight_params) + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class Architecture:
    """What sizing needs to know about a model: dimensions, every linear layer, every other parameter."""

    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tied_embeddings: bool
    attention_dropout: float  # dropout on the attention probabilities in training (GPT-2: attn_pdrop)
    residual_dropout: float  # dropout on each sub-layer's output (GPT-2: resid_pdrop)
    linears: tuple[LinearLayer, ...]
    other_params: tuple[tuple[str, int], ...]  # (parameter name, elements); tied weights listed once
    output_head: str | None  # module name of the output projection (lm_head), excluded by "all-linear"
    # results derived from this architecture (target sets, weight bytes), so a widget update stays fast
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per key for this architecture, then the stored result."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def total_params(self) -> int:
        """All parameters, tied weights counted once."""
        return self.memo("total_params", lambda: sum(lin.params for lin in self.linears)
                         + sum(n for _, n in self.other_params))

    @property
    def linear_suffixes(self) -> tuple[str, ...]:
        """Distinct linear-layer names (``q_proj``, ``c_attn``, ``lm_head``, ...) in model order."""
        return tuple(dict.fromkeys(lin.suffix for lin in self.linears))

    def module_names(self) -> tuple[str, ...]:
        """Every module name that owns parameters (for modules_to_save matching)."""
        names = [lin.name for lin in self.linears] + [p.rsplit(".", 1)[0] for p, _ in self.other_params]
        return tuple(dict.fromkeys(names))


def per_architecture(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Cache ``fn(arch, *args)`` on the architecture, keyed by the function and its (hashable) arguments.

    The planner's one memo: target sets, trainable tensors, weight bytes and layer roles are computed once per
    architecture and setting, so a widget update on a 70B model stays in milliseconds.
    """
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def cached(arch: Architecture, *args: Any) -> Any:
        return arch.memo((name, *args), lambda: fn(arch, *args))

    return cached


def describe_architecture(model_or_config: Any) -> Architecture:
    """Architecture of a preset name, config (object, dict, config.json path) or live ``nn.Module``."""
    if isinstance(model_or_config, Architecture):
        return model_or_config
    if _is_module(model_or_config):
        model = model_or_config
        if hasattr(model, "get_base_model"):  # a PeftModel: describe the transformers model inside
            model = model.get_base_model()
        return _from_module(model, getattr(model, "config", None))
    config_dict, name = load_config_dict(model_or_config)
    return _describe_cached(json.dumps(config_dict, sort_keys=True, default=str), name)


def load_config_dict(source: Any) -> tuple[dict, str]:
    """A plain config dict and a display name from a preset name, dict, path or config object."""
    if isinstance(source, str) and source in PRESETS:
        return _read_json(PRESET_DIR / f"{source}.json", "model"), source
    if isinstance(source, str) and not Path(source).exists() and preset_for(source):
        return load_config_dict(preset_for(source))
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(
                f"model: {str(source)!r} is neither a preset nor a readable config.json; "
                f"presets are {', '.join(PRESETS)}"
            )
        return _read_json(path, "model"), path.parent.name or str(path)
    if isinstance(source, Mapping):
        return dict(source), str(source.get("_name_or_path") or source.get("model_type", "config"))
    if hasattr(source, "to_dict"):
        data = source.to_dict()
        return data, str(data.get("_name_or_path") or data.get("model_type", "config"))
    raise ValueError(
        f"model: expected a preset name ({', '.join(PRESETS)}), a config dict, a config.json path, "
        f"a transformers config or an nn.Module, got {type(source).__name__}"
    )


def preset_for(model_id: str) -> str | None:
    """The preset with the same architecture as a hub id, e.g. "HuggingFaceTB/SmolLM2-135M-Instruct"."""
    key = model_id.rsplit("/", 1)[-1].lower()
    for suffix in ("-instruct", "-it", "-chat"):  # instruction tuning keeps the architecture
        key = key.removesuffix(suffix)
    for name in PRESETS:
        repo = json.loads((PRESET_DIR / f"{name}.json").read_text()).get("_name_or_path", "")
        if key in (name.lower(), repo.rsplit("/", 1)[-1].lower()):
            return name
    return None


def _read_json(path: Path, field: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{field}: cannot read config {str(path)!r}: {err}") from err
    if not isinstance(data, dict) or "model_type" not in data:
        raise ValueError(f"{field}: {str(path)!r} is not a transformers config (no 'model_type')")
    return data


@functools.lru_cache(maxsize=64)
def _describe_cached(config_json: str, name: str) -> Architecture:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = json.loads(config_json)
    data.pop("_name_or_path", None)
    model_type = data.pop("model_type", None)
    try:
        config = AutoConfig.for_model(model_type, **data)
        with torch.device("meta"):  # shapes only: no memory is allocated for the weights
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"model: transformers cannot build a causal LM from this config: {err}") from err
    return _from_module(model, config, name)


def _is_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _from_module(model: Any, config: Any, name: str | None = None) -> Architecture:
    """Walk a module tree (meta or real, quantized or not) into an Architecture."""
    linears = _collect_linears(model)
    head, tied_head = _output_head(model, linears)
    if head is not None and tied_head:
        linears = [replace(lin, tied=True) if lin is head else lin for lin in linears]
    modules = dict(model.named_modules())
    linear_param_ids = {
        id(p)
        for lin in linears
        for pname, p in modules[lin.name].named_parameters(recurse=False)
        if not (lin.tied and pname == "weight")
    }
    other = [  # named_parameters deduplicates tied parameters, like peft does
        (pname, param.numel()) for pname, param in model.named_parameters() if id(param) not in linear_param_ids
    ]
    return Architecture(
        name=name or getattr(config, "_name_or_path", "") or type(model).__name__,
        linears=tuple(linears),
        other_params=tuple(other),
        output_head=head.name if head is not None else None,
        **_dims(config, linears),
    )


def _collect_linears(model: Any) -> list[LinearLayer]:
    import torch

    linears: list[LinearLayer] = []
    for mname, module in model.named_modules():
        kind = type(module).__name__
        if ".lora_" in mname or "modules_to_save" in mname:  # adapter internals of an already-wrapped model
            continue
        mname = mname.replace(".base_layer", "").replace(".original_module", "")
        if isinstance(module, torch.nn.Linear):  # includes bitsandbytes Linear4bit / Linear8bitLt
            d_in, d_out, kind = module.in_features, module.out_features, "Linear"
        elif kind == "Conv1D" and hasattr(module, "nf"):  # GPT-2: weight is (d_in, d_out)
            d_in, d_out = module.weight.shape[0], module.nf
        else:
            continue
        has_bias = getattr(module, "bias", None) is not None
        linears.append(LinearLayer(mname, kind, int(d_in), int(d_out), has_bias))
    return linears


def _output_head(model: Any, linears: list[LinearLayer]) -> tuple[LinearLayer | None, bool]:
    """The output projection and whether it shares its weight with the input embedding."""
    get_out = getattr(model, "get_output_embeddings", None)
    out = get_out() if callable(get_out) else None
    if out is None:
        return None, False
    head_name = next(n for n, m in model.named_modules() if m is out)
    head = next((lin for lin in linears if lin.name == head_name), None)
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    tied = emb is not None and getattr(emb, "weight", None) is getattr(out, "weight", object())
    return head, tied


def _dims(config: Any, linears: list[LinearLayer]) -> dict:
    """Headline dimensions from the config, falling back on the layer shapes."""

    def get(*names: str, default: Any = None) -> Any:
        for attr in names:
            value = getattr(config, attr, None) if config is not None else None
            if value is not None:
                return value
        return default

    hidden = int(get("hidden_size", "n_embd", default=linears[0].in_features if linears else 0))
    heads = int(get("num_attention_heads", "n_head", default=1))
    mlp_widths = [lin.out_features for lin in linears if lin.suffix in ("gate_proj", "up_proj", "c_fc", "fc1")]
    return dict(
        model_type=str(get("model_type", default="unknown")),
        hidden_size=hidden,
        num_layers=int(get("num_hidden_layers", "n_layer", default=0)),
        num_heads=heads,
        num_kv_heads=int(get("num_key_value_heads", default=heads)),
        head_dim=int(get("head_dim", default=hidden // max(heads, 1))),
        intermediate_size=int(get("intermediate_size", "n_inner", default=max(mlp_widths, default=4 * hidden))),
        vocab_size=int(get("vocab_size", default=0)),
        tied_embeddings=bool(get("tie_word_embeddings", default=False)),
        attention_dropout=float(get("attention_dropout", "attn_pdrop", default=0.0)),
        residual_dropout=float(get("resid_pdrop", default=0.0)),
    )


def shrink_config(name_or_config: Any, **overrides: Any) -> dict:
    """A copy of a config with small dimensions but the same structure (for tests and benchmarks)."""
    data, _ = load_config_dict(name_or_config)
    data = copy.deepcopy(data)
    heads = data.get("num_attention_heads", data.get("n_head"))
    kv = data.get("num_key_value_heads", heads)
    ratio = max(1, heads // kv) if heads and kv else 1
    small = dict(  # keeps the GQA ratio: 2 kv heads, 2 * ratio query heads of 16 dims
        hidden_size=32 * ratio, n_embd=64, intermediate_size=128, num_hidden_layers=2, n_layer=2,
        num_attention_heads=2 * ratio, n_head=4, num_key_value_heads=2, head_dim=16,
        vocab_size=256, n_positions=256, n_ctx=256,
    )
    for key, value in small.items():
        if key in data or key in ("hidden_size", "num_hidden_layers", "vocab_size"):
            data[key] = value
    if data.get("model_type") == "gpt2":
        for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                    "head_dim", "intermediate_size", "max_position_embeddings"):
            data.pop(key, None)
    if data.get("model_type") == "gemma2":
        data["query_pre_attn_scalar"] = 16
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # ids of the real vocabulary
        data[key] = None
    for key in ("torch_dtype", "dtype"):  # a tiny model is built in fp32 unless asked otherwise
        data.pop(key, None)
    data.update(overrides)
    return data
