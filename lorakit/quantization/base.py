"""The record every quantization option is: its facts as fields, what depends on them as methods.

A backend module (``lorakit.quantization.bitsandbytes``, ``...torchao``) subclasses ``Quantization`` and
overrides what its library does differently; the planner, the trainer, preflight, the HF callback, the widgets
and the notebooks ask the records and never name a backend. ``NONE`` is the unquantized base. Pure Python:
a method that needs torch or transformers imports it when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCALE_FP32 = 4  # bytes of an fp32 scale


@dataclass(frozen=True)
class LogNotice:
    """A known, harmless library notice to keep out of notebooks (``lorakit.quiet`` installs the filters).

    ``logger``: a logging logger's name, or "" for a ``warnings`` warning; ``text``: what the message starts
    with (``match="start"``) or contains (``match="contains"``).
    """

    logger: str
    text: str
    match: str = "contains"

    def drops(self, message: str) -> bool:
        """Whether this notice covers ``message``."""
        return message.startswith(self.text) if self.match == "start" else self.text in message


@dataclass(frozen=True)
class Quantization:
    """How the frozen base's linear layers are stored; embeddings, norms and the output head never are.

    Storage is exact bytes per layer (``linear_bytes``), checked against models as loaded in the tests.
    """

    name: str
    label: str
    backend: str = ""  # the package that quantizes ("" = none); preflight checks it is installed
    stores: str = "every weight in the run's precision"  # what one weight holds, in words
    code_format: str | None = None  # the lorakit.formats name of one stored code (the FloatExplorer shows it)
    code_bits: int = 0  # bits one code takes in memory (a 4-bit code unpacked into an int8 takes 8)
    aliases: tuple[str, ...] = ()  # other spellings people bring from the library
    min_version: str = ""  # of ``backend``
    devices: tuple[str, ...] = ("cpu", "cuda")
    double_quant: bool = False  # offers double quantization of its block constants
    own_compute_dtype: bool = False  # its layers compute in a dtype of their own (else the run's precision)
    fsdp_refusal: str = ""  # why FSDP cannot shard it; "" = it can
    keeps_input: bool = False  # each base layer keeps its input for backward, outside autograd's saved tensors
    copies_input: bool = False  # each adapted base layer saves its own copy of its input (autograd sees it)
    adapters_share_input: bool = False  # under CUDA autocast peft's adapters reuse the base layer's input
    fit_order: int = 0  # its rung on the fit advice's ladder: how much it saves (0: nothing, 2: a 4-bit base)
    fit_cost: float | None = None  # its cost in quality, ranking equally small changes; None: never suggested
    fit_words: str = ""  # how the fit advice names it
    notices: tuple[LogNotice, ...] = ()

    @property
    def quantized(self) -> bool:
        """Whether the linear layers are stored in fewer bits than the run's precision."""
        return bool(self.backend)

    @property
    def is_4bit(self) -> bool:
        """Whether it takes 4-bit options (double quantization): kept for the notebooks' tables."""
        return self.double_quant

    @property
    def names(self) -> tuple[str, ...]:
        """Its name and every alias."""
        return (self.name, *self.aliases)

    def prepare_loaded(self, model: Any) -> int:
        """Make a model loaded with this option ready to train (returns how many layers it touched; 0: nothing)."""
        return 0

    def bits_per_param(self, double_quant: bool = False, **block: int) -> float:
        """Storage bits per quantized weight with its scales, for a large layer (per-row constants left out)."""
        raise ValueError(f"quantization {self.name!r} stores weights unquantized")

    def linear_bytes(self, out_features: int, in_features: int, double_quant: bool, dtype_bytes: int) -> int:
        """Bytes one linear layer's weight takes as loaded (its bias stays in the compute dtype)."""
        return out_features * in_features * dtype_bytes

    def peft_numel(self, elements: int) -> int:
        """How many parameters peft counts for a quantized weight of ``elements`` weights."""
        return elements

    def param_numel(self, param: Any) -> int | None:
        """The weights a loaded parameter of this option holds (a packed parameter's numel() counts its storage
        elements); None when the parameter is not one of this option's."""
        return None

    def stored_tensors(self, param: Any) -> list[Any] | None:
        """The tensors whose bytes a loaded parameter of this option takes (quantization state included); None
        when the parameter is not one of this option's."""
        return None

    def dequantized(self, layer: Any) -> Any | None:
        """A loaded layer's weight in floating point, computed without changing the layer (its next forward must
        run as if nothing had read it); None when the layer is not one of this option's."""
        return None

    def recognizes(self, quantization_config: Any) -> bool:
        """Whether a model's ``config.quantization_config`` (a dict or an object) is this option."""
        return False

    def transformers_config(self, double_quant: bool, compute_dtype: str, sharded: bool) -> Any:
        """transformers' ``quantization_config`` to load a base this way, or None (imports transformers).

        ``compute_dtype``: the torch dtype layers compute in; ``sharded``: the run shards the base with FSDP.
        """
        return None

    def check(self, double_quant: bool, fsdp: bool) -> None:
        """Refuse settings this option does not take (ValueError naming the field)."""
        if fsdp and self.fsdp_refusal:
            raise ValueError(f"distributed='fsdp' cannot shard quantization={self.name!r}: {self.fsdp_refusal}")


NONE = Quantization("none", "none (16/32-bit)", fit_cost=0, fit_words="no quantization")


def get_option(qconfig: Any, key: str, default: Any = None) -> Any:
    """A field of a quantization config given as a dict (from config.json) or an object."""
    if isinstance(qconfig, dict):
        return qconfig.get(key, default)
    return getattr(qconfig, key, default)
