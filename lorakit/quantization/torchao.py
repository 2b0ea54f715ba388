"""torchao: PyTorch's own weight-only quantization (int8, FP8 E4M3, and int4 / int2 in groups of 32).

transformers loads a base through ``TorchAoConfig``; each linear weight becomes a torchao tensor subclass that
dequantizes on use, and peft trains LoRA beside it (``tuners/lora/torchao.py``, whose layers cast the input to
the adapters' dtype as on a 16-bit base). Each such layer saves a copy of its input for backward (measured with
saved_tensors_hooks: one [tokens, in_features] tensor per adapted layer). What a weight holds, read from the
loaded tensors:

* int8 (``Int8WeightOnlyConfig``): an int8 code per weight, an fp32 scale and an int8 zero point per row;
* FP8 (``Float8WeightOnlyConfig``): an FP8 E4M3 code per weight and an fp32 scale per row;
* int4 / int2 (``IntxWeightOnlyConfig``, group 32): each code unpacked into an int8 (so 8 bits in memory, not
  4 or 2), and per group of 32 a scale in the compute dtype and an int8 zero point.

Embeddings, norms and the output head stay unquantized. ``Int4WeightOnlyConfig`` needs kernels this CPU build
lacks; HQQ does not load in transformers 5 (``NotImplementedError``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorakit.quantization.base import SCALE_FP32, LogNotice, Quantization, get_option

GROUP = 32  # weights per scale of the int4 / int2 options
NOTICES = (
    # at import: kernels built for other Pythons and GPUs (the weight-only options here need none of them)
    LogNotice("torchao", "Could not load this library"),
    # at import: torch deprecates torchao's registration of its enums
    LogNotice("torch.utils._pytree", "is an Enum subclass and is now natively supported"),
)


@dataclass(frozen=True)
class WeightOnly(Quantization):
    """One of torchao's weight-only configs: ``config_class`` with ``weight_dtype`` (a torch dtype name)."""

    config_class: str = ""
    weight_dtype: str = ""  # for IntxWeightOnlyConfig: "int4", "int2"
    group: int | None = None  # weights per scale; None: one scale per output row
    zero_point_bytes: int = 0  # per scale

    def bits_per_param(self, double_quant: bool = False, scale_bits: int = 16, **block: int) -> float:
        """Bits in memory per weight; with groups, their scale (``scale_bits``: the compute dtype's) and zero point."""
        if self.group is None:  # per-row constants: nothing per weight for a large layer
            return float(self.code_bits)
        return self.code_bits + (scale_bits + 8 * self.zero_point_bytes) / self.group

    def linear_bytes(self, out_features: int, in_features: int, double_quant: bool, dtype_bytes: int) -> int:
        codes = out_features * in_features * self.code_bits // 8
        if self.group is None:  # per row: an fp32 scale (and an int8 zero point)
            return codes + out_features * (SCALE_FP32 + self.zero_point_bytes)
        groups = out_features * -(-in_features // self.group)  # scales in the compute dtype
        return codes + groups * (dtype_bytes + self.zero_point_bytes)

    def stored_tensors(self, param: Any) -> list[Any] | None:
        tensor = getattr(param, "data", param)
        if not type(tensor).__module__.startswith("torchao") or not hasattr(tensor, "__tensor_flatten__"):
            return None
        return [getattr(tensor, name) for name in tensor.__tensor_flatten__()[0]]

    def recognizes(self, quantization_config: Any) -> bool:
        method = get_option(quantization_config, "quant_method")
        if str(getattr(method, "value", method)) != "torchao":
            return False
        quant_type = get_option(quantization_config, "quant_type")
        if isinstance(quant_type, dict):  # as saved in config.json
            quant_type = quant_type.get("default", quant_type)
            name, data = quant_type.get("_type"), quant_type.get("_data", {})
            dtype = str(data.get("weight_dtype", {}).get("_data", "")) if isinstance(data, dict) else ""
        else:
            name, dtype = type(quant_type).__name__, str(getattr(quant_type, "weight_dtype", ""))
        return name == self.config_class and (not self.weight_dtype or dtype.endswith(self.weight_dtype))

    def transformers_config(self, double_quant: bool, compute_dtype: Any, sharded: bool) -> Any:
        import torch
        import torchao.quantization as ao
        from torchao.quantization.granularity import PerGroup
        from transformers import TorchAoConfig

        kwargs: dict[str, Any] = {}
        if self.weight_dtype:
            kwargs = {"weight_dtype": getattr(torch, self.weight_dtype), "granularity": PerGroup(self.group)}
        return TorchAoConfig(quant_type=getattr(ao, self.config_class)(**kwargs))


COMMON = dict(backend="torchao", min_version="0.18", notices=NOTICES, fit_order=1, copies_input=True,
              fsdp_refusal="lorakit has not verified FSDP with torchao's quantized tensors; use distributed='ddp'.")
RECORDS = (
    WeightOnly("torchao_int8", "torchao int8 (8-bit weight-only, a scale per row)", config_class="Int8WeightOnlyConfig",
               code_format="int8", code_bits=8, zero_point_bytes=1,
               stores="an int8 code per weight, an fp32 scale and an int8 zero point per output row", **COMMON),
    WeightOnly("torchao_fp8", "torchao fp8 (8-bit FP8 E4M3 weight-only, a scale per row)", config_class="Float8WeightOnlyConfig",
               code_format="fp8_e4m3fn", code_bits=8,
               stores="an FP8 E4M3 code per weight and an fp32 scale per output row", **COMMON),
    WeightOnly("torchao_int4", "torchao int4 (4-bit weight-only, groups of 32, one int8 per code)",
               config_class="IntxWeightOnlyConfig", weight_dtype="int4", group=GROUP, code_format="int4",
               code_bits=8, zero_point_bytes=1, stores="an int4 code per weight held in an int8, and per group "
               "of 32 weights a scale in the compute dtype and an int8 zero point", **dict(COMMON, fit_order=2)),
    WeightOnly("torchao_int2", "torchao int2 (2-bit weight-only, groups of 32, one int8 per code)",
               config_class="IntxWeightOnlyConfig", weight_dtype="int2", group=GROUP, code_format="int2",
               code_bits=8, zero_point_bytes=1, stores="an int2 code per weight held in an int8, and per group "
               "of 32 weights a scale in the compute dtype and an int8 zero point", **dict(COMMON, fit_order=3)),
)
