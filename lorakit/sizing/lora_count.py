"""Count what LoRA trains, the way ``peft.PeftModel.get_nb_trainable_parameters()`` counts it.

For an adapted weight W0 (d_out x d_in), LoRA learns W = W0 + (alpha / r) * B A with B: d_out x r
(initialised to zero) and A: r x d_in, so it trains r * (d_in + d_out) numbers instead of d_out * d_in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from lorakit.quantization import QUANTIZATIONS
from lorakit.sizing.architecture import Architecture, LinearLayer, describe_architecture, per_architecture
from lorakit.training.config import TrainConfig

ALL_LINEAR = "all-linear"


@dataclass(frozen=True)
class ModuleTypeCount:
    """LoRA on every layer of one kind and shape, e.g. all 32 ``q_proj`` (4096 -> 4096)."""

    name: str
    kind: str
    in_features: int
    out_features: int
    count: int  # how many matrices of this kind and shape are adapted
    lora_params_each: int  # r * (d_in + d_out), + d_out with lora_bias, + d_out with DoRA
    full_update_params_each: int  # d_out * d_in: what full fine-tuning would train

    @property
    def lora_params(self) -> int:
        """Trainable LoRA parameters over all ``count`` matrices."""
        return self.count * self.lora_params_each

    @property
    def full_update_params(self) -> int:
        """Parameters a full update of these matrices would train."""
        return self.count * self.full_update_params_each


@dataclass(frozen=True)
class LoraCount:
    """Trainable / frozen / total parameters of a LoRA model, with a per-module-type breakdown."""

    model: str
    r: int
    trainable_params: int
    frozen_params: int
    total_params: int
    base_params: int
    modules: tuple[ModuleTypeCount, ...]
    saved_module_params: int  # trainable copies made by modules_to_save
    adapted_layer_names: tuple[str, ...]

    @property
    def trainable_percent(self) -> float:
        """Trainable share of all parameters, in percent."""
        return 100.0 * self.trainable_params / self.total_params

    @property
    def lora_params(self) -> int:
        """Parameters in the LoRA matrices (and their bias / DoRA magnitude)."""
        return sum(m.lora_params for m in self.modules)

    def as_dict(self) -> dict:
        """Plain numbers, JSON-ready; modules as a list of dicts."""
        out = asdict(self)
        out["modules"] = [dict(asdict(m), lora_params=m.lora_params) for m in self.modules]
        out["trainable_percent"] = self.trainable_percent
        out["lora_params"] = self.lora_params
        out["adapted_layer_names"] = list(self.adapted_layer_names)
        return out


def count_lora_params(
    model_or_config: Any,
    r: int = 8,
    target_modules: str | Sequence[str] | None = ALL_LINEAR,
    *,
    lora_bias: bool = False,
    modules_to_save: Sequence[str] | None = None,
    use_dora: bool = False,
    quantization: str = "none",
) -> LoraCount:
    """Parameters trained and frozen by a LoRA adapter on a model, a config or a preset name.

    r, target_modules, use_dora and quantization are TrainConfig fields, validated as TrainConfig does.
    """
    shared = TrainConfig(r=r, target_modules=target_modules, use_dora=use_dora, quantization=quantization)
    target_modules, quantization = shared.target_modules, shared.quantization
    arch = describe_architecture(model_or_config)
    if lora_bias and use_dora:  # peft refuses this combination
        raise ValueError("lora_bias: True is not supported together with use_dora=True (peft refuses it)")
    saved = list(modules_to_save or [])
    select_targets(arch, target_modules, saved)  # validates the targets (ValueError naming the field)
    check_rank(r, smallest_adapted_dimension(arch, target_modules, saved))
    return _count(arch, r, targets_key(target_modules), lora_bias, tuple(saved), use_dora, quantization)


@per_architecture
def _count(arch: Architecture, r: int, target_modules: Any, lora_bias: bool, saved: tuple[str, ...],
           use_dora: bool, quantization: str) -> LoraCount:
    groups = adapted_groups(arch, target_modules, saved)
    extra = (1 if lora_bias else 0) + (1 if use_dora else 0)  # each adds a d_out vector
    modules = tuple(
        ModuleTypeCount(
            name=suffix, kind=kind, in_features=d_in, out_features=d_out, count=count,
            lora_params_each=r * (d_in + d_out) + extra * d_out, full_update_params_each=d_in * d_out,
        )
        for (suffix, kind, d_in, d_out), count in groups.items()
    )
    base = _base_params_as_peft_counts(arch, quantization)
    copies = _modules_to_save_params(arch, saved)
    trainable = sum(m.lora_params for m in modules) + copies
    total = base + trainable
    return LoraCount(
        model=arch.name, r=r, trainable_params=trainable, frozen_params=total - trainable, total_params=total,
        base_params=base, modules=modules, saved_module_params=copies,
        adapted_layer_names=tuple(lin.name for lin in select_targets(arch, target_modules, saved)),
    )


@per_architecture
def adapted_groups(arch: Architecture, target_modules: Any, saved: tuple[str, ...]) -> dict[tuple, int]:
    """(suffix, kind, d_in, d_out) -> how many adapted layers have it: what a count needs besides r."""
    groups: dict[tuple, int] = {}
    for lin in select_targets(arch, target_modules, saved):
        key = (lin.suffix, lin.kind, lin.in_features, lin.out_features)
        groups[key] = groups.get(key, 0) + 1
    return groups


def smallest_adapted_dimension(arch: Architecture, target_modules: Any, modules_to_save: Sequence[str] = ()) -> int:
    """min(d_in, d_out) over the adapted layers: the largest rank LoRA can use."""
    return _smallest(arch, targets_key(target_modules), tuple(modules_to_save))


@per_architecture
def _smallest(arch: Architecture, target_modules: Any, modules_to_save: tuple[str, ...]) -> int:
    return min(min(lin.in_features, lin.out_features) for lin in select_targets(arch, target_modules, modules_to_save))


def check_rank(r: Any, smallest: int) -> None:
    """r must be a positive integer no larger than the smallest adapted dimension."""
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise ValueError(f"r: must be a positive integer, got {r!r}")
    if r > smallest:
        raise ValueError(f"r: {r} is larger than the smallest adapted dimension ({smallest}); allowed 1..{smallest}")


def select_targets(
    arch: Architecture, target_modules: str | Sequence[str] | None, modules_to_save: Sequence[str] = ()
) -> list[LinearLayer]:
    """The linear layers peft would adapt for ``target_modules`` (list, regex string or "all-linear")."""
    if not isinstance(target_modules, (str, list, tuple, type(None))):
        raise ValueError(f"target_modules: {target_modules!r} is a {type(target_modules).__name__}; give "
                         f"'all-linear', a regex string or a list of names such as {', '.join(arch.linear_suffixes)}")
    if isinstance(target_modules, (list, tuple)):
        for name in target_modules:
            if not isinstance(name, str):
                raise ValueError(f"target_modules: {name!r} is not a layer name; allowed: "
                                 f"{', '.join(arch.linear_suffixes)} or 'all-linear'")
    return _select(arch, targets_key(target_modules), tuple(modules_to_save))


def targets_key(target_modules: Any) -> Any:
    """A hashable stand-in for target_modules (ValueError naming the field for a wrong type)."""
    if not isinstance(target_modules, (str, list, tuple, type(None))):
        raise ValueError(f"target_modules: {target_modules!r} is a {type(target_modules).__name__}; give "
                         "'all-linear', a regex string or a list of module names")
    return target_modules if isinstance(target_modules, str) or target_modules is None else tuple(target_modules)


@per_architecture
def _select(arch: Architecture, target_modules: Any, modules_to_save: tuple[str, ...]) -> list[LinearLayer]:
    if target_modules is None or (not isinstance(target_modules, str) and len(target_modules) == 0):
        raise ValueError(f"target_modules: give a list of names, a regex or 'all-linear'; names here: "
                         f"{', '.join(arch.linear_suffixes)}")
    if isinstance(target_modules, str) and target_modules.lower() == ALL_LINEAR:
        chosen = [lin for lin in arch.linears if lin.name != arch.output_head]
    elif isinstance(target_modules, str):
        chosen = _regex_targets(arch, target_modules)
    else:
        chosen = _list_targets(arch, list(target_modules))
    # peft never puts an adapter inside a module listed in modules_to_save
    excluded = [re.compile(rf"(^|.*\.){m}($|\..*)") for m in modules_to_save]
    return [lin for lin in chosen if not any(p.match(lin.name) for p in excluded)]


def _regex_targets(arch: Architecture, pattern: str) -> list[LinearLayer]:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"target_modules: {pattern!r} is not a valid regular expression: {err}") from err
    chosen = [lin for lin in arch.linears if regex.fullmatch(lin.name)]
    other = [name for name in arch.module_names() if regex.fullmatch(name) and name not in {c.name for c in chosen}]
    if other:
        raise ValueError(f"target_modules: {pattern!r} matches {other[0]!r}, which is not a linear layer; "
                         f"linear layers here: {', '.join(arch.linear_suffixes)}")
    if not chosen:
        raise ValueError(f"target_modules: regex {pattern!r} matches no layer (full match on names such as "
                         f"{arch.linears[0].name!r}); linear layers here: {', '.join(arch.linear_suffixes)}")
    return chosen


def _list_targets(arch: Architecture, names: list[str]) -> list[LinearLayer]:
    for name in names:
        if not isinstance(name, str) or not any(_suffix_match(lin.name, name) for lin in arch.linears):
            raise ValueError(f"target_modules: {name!r} is not a linear layer of {arch.name}; "
                             f"allowed: {', '.join(arch.linear_suffixes)} or 'all-linear'")
    return [lin for lin in arch.linears if any(_suffix_match(lin.name, t) for t in names)]


def _suffix_match(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def _base_params_as_peft_counts(arch: Architecture, quantization: str) -> int:
    """Base-model parameters as peft counts them (a packed weight may count more than it holds: the record says)."""
    quant = QUANTIZATIONS[quantization]
    if not quant.quantized:
        return arch.total_params
    total = 0
    for lin in arch.linears:
        quantized = lin.name != arch.output_head and not lin.tied
        weight = quant.peft_numel(lin.weight_params) if quantized else (0 if lin.tied else lin.weight_params)
        total += weight + (lin.out_features if lin.bias else 0)
    return total + sum(n for _, n in arch.other_params)


def _modules_to_save_params(arch: Architecture, modules_to_save: Sequence[str]) -> int:
    """Elements of the trainable copies peft makes of every module whose name ends with an entry."""
    if not modules_to_save:
        return 0
    owners = [n for n in arch.module_names() if any(n.endswith(m) for m in modules_to_save)]
    for m in modules_to_save:
        if not any(n.endswith(m) for n in owners):
            raise ValueError(f"modules_to_save: {m!r} names no module of {arch.name}; e.g. "
                             f"{', '.join(sorted({n.rsplit('.', 1)[-1] for n in arch.module_names()}))}")
    total = 0
    for lin in arch.linears:  # a copied tied lm_head gets its own weight
        if any(lin.name == o or lin.name.startswith(o + ".") for o in owners):
            total += lin.weight_params + (lin.out_features if lin.bias else 0)
    for pname, numel in arch.other_params:
        if any(pname.startswith(o + ".") for o in owners):
            total += numel
    return total
