"""bitsandbytes: LLM.int8 (8-bit) and the 4-bit codebooks NF4 and bnb-FP4, everything lorakit knows about them.

Storage: int8 keeps one fp32 scale per output row; 4-bit keeps two codes per byte plus an fp32 absmax per block
of 64 (4.5 bits/param), or with double quantization an 8-bit absmax per 64 and an fp32 one per 256 blocks
(4 + 8/64 + 32/(64*256) ~ 4.127), and each layer's quantization state carries its 16-entry fp32 codebook.
peft's bitsandbytes LoRA layers (``tuners/lora/bnb.py``) skip casting the input to the adapters' dtype when
``torch.is_autocast_enabled()``, which asks about CUDA only; an 8-bit layer (``MatMul8bitLt`` on CUDA,
``MatMul8bitFp`` on the CPU) keeps its input on the autograd context although backward does not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lorakit.quantization.base import SCALE_FP32, LogNotice, Quantization, get_option

BLOCK = 64  # weights per 4-bit block (one absmax each)
DQ_BLOCKS = 256  # blocks per second-level absmax with double quantization
CODEBOOK_BYTES = 16 * 4  # the 16-entry fp32 codebook each 4-bit layer's quant state carries
DQ_STATE_BYTES = 256 * 4 + 4  # double quantization's 256-entry fp32 code and its fp32 offset
MIN_VERSION = "0.46"  # the first release with x86 CPU kernels for 4- and 8-bit

NOTICES = (
    # at import on a CPU with AVX512-BF16: the optional `kernels` package is missing, its own kernels run
    LogNotice("bitsandbytes.backends.cpu.ops", "from kernels-community"),
    # at every forward of every int8 layer computing in fp32; LLM.int8 always multiplies in fp16
    LogNotice("bitsandbytes.autograd._functions", "MatMul8bitLt: inputs will be cast from", "start"),
)
COMMON = dict(backend="bitsandbytes", min_version=MIN_VERSION, adapters_share_input=True, notices=NOTICES)


@dataclass(frozen=True)
class Int8(Quantization):
    """LLM.int8: int8 weights with one fp32 scale per output row, outliers multiplied in fp16."""

    def bits_per_param(self, double_quant: bool = False, **block: int) -> float:
        return 8.0

    def linear_bytes(self, out_features: int, in_features: int, double_quant: bool, dtype_bytes: int) -> int:
        return out_features * in_features + SCALE_FP32 * out_features  # int8 codes + Int8Params.SCB

    def stored_tensors(self, param: Any) -> list[Any] | None:
        scb = getattr(param, "SCB", None)  # Int8Params: one fp32 scale per output row
        return [param, scb] if _tensor(scb) else None

    def dequantized(self, layer: Any) -> Any | None:
        # Before its first forward the row scales sit on the weight (Int8Params.SCB), after it on the layer's
        # state. peft's dequantize_module_weight sets state.SCB and re-creates the weight on the CPU, after which
        # the layer's first forward failed (bitsandbytes' matmul found no state.CB): read, never write.
        weight, state = getattr(layer, "weight", None), getattr(layer, "state", None)
        if type(weight).__name__ != "Int8Params":
            return None
        scb = weight.SCB if _tensor(getattr(weight, "SCB", None)) else getattr(state, "SCB", None)
        if not _tensor(scb):
            raise ValueError(f"an 8-bit {type(layer).__name__} without its row scales (SCB): cannot de-quantize it")
        return weight.data.float() * (scb.float().view(-1, 1) / 127.0)

    def recognizes(self, quantization_config: Any) -> bool:
        return bool(get_option(quantization_config, "load_in_8bit", False))

    def transformers_config(self, double_quant: bool, compute_dtype: str, sharded: bool) -> Any:
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True)


@dataclass(frozen=True)
class FourBit(Quantization):
    """A 16-entry codebook scaled by each block's absmax; ``quant_type`` is bitsandbytes' name for it."""

    quant_type: str = ""

    def bits_per_param(self, double_quant: bool = False, block: int = BLOCK, dq_blocks: int = DQ_BLOCKS) -> float:
        if double_quant:  # an 8-bit absmax per block and an fp32 one per dq_blocks blocks
            return 4 + 8 / block + 32 / (block * dq_blocks)
        return 4 + 32 / block  # an fp32 absmax per block

    def linear_bytes(self, out_features: int, in_features: int, double_quant: bool, dtype_bytes: int) -> int:
        n = out_features * in_features
        blocks, packed = -(-n // BLOCK), -(-n // 2)  # two 4-bit codes per byte
        if not double_quant:
            return packed + blocks * SCALE_FP32 + CODEBOOK_BYTES
        return packed + blocks + -(-blocks // DQ_BLOCKS) * SCALE_FP32 + DQ_STATE_BYTES + CODEBOOK_BYTES

    def peft_numel(self, elements: int) -> int:
        return 2 * -(-elements // 2)  # Params4bit holds ceil(n / 2) bytes; peft doubles its numel()

    def param_numel(self, param: Any) -> int | None:
        # Params4bit packs two 4-bit values per byte of its storage dtype (a quarter with bf16 quant storage)
        return param.numel() * 2 * param.element_size() if type(param).__name__ == "Params4bit" else None

    def stored_tensors(self, param: Any) -> list[Any] | None:
        state = getattr(param, "quant_state", None)  # absmax, codebook, nested state
        if state is None:
            return None
        out = [param] + [t for t in (state.absmax, state.code, getattr(state, "offset", None)) if _tensor(t)]
        nested = getattr(state, "state2", None)
        return out + ([nested.absmax, nested.code] if nested is not None else [])

    def prepare_loaded(self, model: Any) -> int:
        """Stop bitsandbytes repacking 4-bit weights for CPU inference; returns how many layers it touched.

        On a CPU with AVX512-BF16, bitsandbytes (0.50) repacks a ``Linear4bit``'s weight the first time the layer
        runs in eval mode without gradients (a held-out evaluation, the fused head's check), for good, and from
        then on multiplies with ``gemv_4bit``, which has no backward: gradients stop flowing through the frozen
        base to the adapters below it (torch warns "an autograd kernel was not registered"). A training run never
        wants that.
        """
        layers = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
        for layer in layers:
            layer.support_avx512bf16_for_cpu = False
        return len(layers)

    def recognizes(self, quantization_config: Any) -> bool:
        if not get_option(quantization_config, "load_in_4bit", False):
            return False
        return str(get_option(quantization_config, "bnb_4bit_quant_type", "fp4")) == self.quant_type

    def transformers_config(self, double_quant: bool, compute_dtype: str, sharded: bool) -> Any:
        from transformers import BitsAndBytesConfig

        kwargs = {"load_in_4bit": True, "bnb_4bit_quant_type": self.quant_type,
                  "bnb_4bit_use_double_quant": bool(double_quant), "bnb_4bit_compute_dtype": compute_dtype}
        if sharded:
            # FSDP shards float tensors only: bitsandbytes then packs the 4-bit codes into the compute dtype
            # (4 per bf16 element), the FSDP + QLoRA recipe of peft's and bitsandbytes' documentation.
            kwargs["bnb_4bit_quant_storage"] = compute_dtype
        return BitsAndBytesConfig(**kwargs)


OPTIMIZERS = {"adamw_8bit": "AdamW8bit", "paged_adamw_8bit": "PagedAdamW8bit"}  # lorakit name -> class


def make_optimizer(name: str, params: Any, **kwargs: Any) -> Any:
    """One of bitsandbytes' 8-bit optimizers (block-wise quantized states) over ``params``."""
    import bitsandbytes

    return getattr(bitsandbytes.optim, OPTIMIZERS[name])(params, **kwargs)


def _tensor(value: Any) -> bool:
    return value is not None and hasattr(value, "untyped_storage")


INT8 = Int8(
    "int8", "8-bit (LLM.int8)", stores="an int8 code per weight and an fp32 scale per output row",
    code_format="int8", code_bits=8, aliases=("8bit",), keeps_input=True, fit_order=1, fit_cost=2,
    fit_words="8-bit base",
    fsdp_refusal="FSDP splits float tensors, and only bitsandbytes' 4-bit layers store their weights in a "
                 "float dtype. Use quantization='nf4' (QLoRA + FSDP) or distributed='ddp'.",
    **COMMON,
)
FOUR_BIT = dict(code_bits=4, double_quant=True, own_compute_dtype=True, **COMMON)
NF4 = FourBit(
    "nf4", "4-bit nf4 (NormalFloat codebook)", quant_type="nf4", code_format="nf4", fit_order=2, fit_cost=3,
    fit_words="nf4", stores="a 4-bit NormalFloat code per weight (two per byte) and an absmax per block of 64",
    **FOUR_BIT,
)
BNB_FP4 = FourBit(
    "bnb_fp4", "4-bit bnb_fp4 (bitsandbytes' codebook, not OCP E2M1)", quant_type="fp4", aliases=("fp4",), fit_order=2,
    code_format="bnb_fp4", stores="a 4-bit code of bitsandbytes' FP4 table per weight and an absmax per block of 64",
    **FOUR_BIT,
)
RECORDS = (INT8, NF4, BNB_FP4)
# QLoRA (Dettmers et al.): NF4 + double quantization + bf16 compute. transformers' BitsAndBytesConfig defaults
# to fp4, no double quantization and fp32 compute, so the recipe says every one of them.
QLORA = {"quantization": "nf4", "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bf16",
         "precision": "bf16"}
