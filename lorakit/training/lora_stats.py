"""What a LoRA adapter has learned, per adapted layer: how far its update moved the weight, and its spectrum.

For an adapted layer with frozen weight W0 (d_out x d_in) and factors B (d_out x r), A (r x d_in), peft adds
ΔW = s·B·A, with s = peft's ``scaling`` of that layer: lora_alpha / r, or lora_alpha / sqrt(r) under rsLoRA
(peft stores the right one, so rank_pattern and alpha_pattern come with it). For each layer this gives:

* ``rel_norm`` = ||ΔW||_F / ||W0||_F, with W0 de-quantized for a quantized base
  (``lorakit.quantization.dequantized_weight``, which leaves the layer as it was);
* ``singular_values`` of ΔW, without ever forming ΔW: with the thin QR factorisations B = Q_B R_B and
  Aᵀ = Q_A R_A, ΔW = s·Q_B (R_B R_Aᵀ) Q_Aᵀ, whose singular values are those of the r x r core s·R_B R_Aᵀ.
  That costs O((d_in + d_out)·r²), not the O(d_in·d_out·r) of the dense product; ||ΔW||_F = sqrt(Σ σ²);
* ``effective_rank``: Roy & Vetterli's entropy rank (2007), exp(H(p)) with p_i = σ_i / Σ_j σ_j: 1 when one
  direction carries the whole update, r when all r carry the same weight; 0 for a zero update (B starts at
  zero, so before the first step every layer's update is zero).

Layers are grouped by shape and each group is factorised in one batched call on the model's device (the QR in
float32, the factors' precision; the core's SVD and every norm in float64). ``UpdateTracker`` is the trainer's form: the base norms taken once, and at each logging step every
layer's spectrum and norms as one device tensor, read by the caller in one go (the run's counting ``read``).
DoRA (and peft's other LoRA variants) do not add s·B·A, so they are refused with a message, as are adapters
merged into the base weight.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lorakit.quantization import dequantized_weight

__all__ = ["LayerUpdate", "UpdateTracker", "effective_rank", "lora_layers", "lora_update_stats", "tracker_for_run",
           "update_grid"]

_NORM_CHUNK = 1 << 22  # elements per chunk when summing a base weight's squares in float64


@dataclass(frozen=True)
class LayerUpdate:
    """One adapted layer's update ΔW = scaling·B·A (norms in the weight's units; singular values descending)."""

    name: str  # the module's name in the model (model.get_submodule(name))
    module_type: str  # its last name component: "q_proj", "down_proj", ...
    layer: int | None  # the first numeric component of its name (the decoder block), None without one
    r: int
    scaling: float  # lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA
    shape: tuple[int, int]  # (d_out, d_in) of ΔW (a conv weight's kernel dimensions folded into d_in)
    update_norm: float  # ||ΔW||_F
    base_norm: float  # ||W0||_F, de-quantized
    rel_norm: float  # update_norm / base_norm
    singular_values: tuple[float, ...]  # of ΔW, min(r, d_out, d_in) of them
    effective_rank: float  # Roy & Vetterli's entropy rank of singular_values (0 for a zero update)


def effective_rank(singular_values: Sequence[float]) -> float:
    """Roy & Vetterli's effective rank: exp of the entropy of σ_i / Σσ (0 when every σ is 0)."""
    total = sum(singular_values)
    if total <= 0:
        return 0.0
    entropy = -sum(p * math.log(p) for p in (s / total for s in singular_values) if p > 0)
    return math.exp(entropy)


# ---- finding the adapted layers -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Adapted:
    name: str
    layer: object  # the peft LoraLayer module
    a: torch.Tensor  # (r, d_in): A's weight, conv kernels folded
    b: torch.Tensor  # (d_out, r)
    scaling: float


def _layer_index(parts: list[str]) -> int | None:
    return next((int(p) for p in parts if p.isdigit()), None)


def _module_type(parts: list[str]) -> str:
    return next((p for p in reversed(parts) if not p.isdigit()), parts[-1])


def _factors(name: str, layer, adapter: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(A as r x d_in, B as d_out x r) of ``adapter`` on this layer; None when the adapter is not on it."""
    if adapter in layer.merged_adapters:
        raise ValueError(f"{name}: adapter {adapter!r} is merged into the base weight, so W0 is no longer "
                         "there to compare with; call model.unmerge_adapter() first")
    if adapter in getattr(layer, "lora_magnitude_vector", {}):
        raise ValueError(f"{name}: adapter {adapter!r} uses DoRA (use_dora=True), whose update rescales each "
                         "column of W0 + B·A by a learned magnitude, so it is not scaling·B·A; "
                         "lora_update_stats measures LoRA and rsLoRA adapters only")
    variant = getattr(layer, "lora_variant", {}).get(adapter)
    if variant is not None:
        raise ValueError(f"{name}: adapter {adapter!r} is a LoRA variant ({type(variant).__name__}) whose "
                         "update is not scaling·B·A; lora_update_stats measures LoRA and rsLoRA adapters only")
    if adapter in layer.lora_A:
        a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
    elif adapter in getattr(layer, "lora_embedding_A", {}):
        a, b = layer.lora_embedding_A[adapter], layer.lora_embedding_B[adapter]
    else:
        return None
    r = a.shape[0]
    a, b = a.detach().reshape(r, -1), b.detach().reshape(b.shape[0], -1)
    if b.shape[1] != r:  # a grouped convolution's B is block-diagonal, not a d_out x r matrix
        raise ValueError(f"{name}: a {type(layer).__name__} whose B is {tuple(b.shape)} for r={r} (a grouped "
                         "convolution?): its update is not a plain product B·A")
    return a, b


def lora_layers(model) -> list[tuple[str, object]]:
    """(name, module) of every peft LoRA layer of ``model``; ValueError when it has none."""
    from peft.tuners.lora import LoraLayer

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no LoRA layers: wrap the model with peft.get_peft_model("
                         "model, LoraConfig(...)) or load an adapter with PeftModel.from_pretrained first")
    return layers


def adapted_layers(model, adapter: str | None = None) -> list[_Adapted]:
    """Every layer of ``model`` that ``adapter`` (default: the active one) adapts; ValueError when there is none."""
    layers = lora_layers(model)
    if adapter is None:
        active = {a for _, m in layers for a in m.active_adapters}
        if len(active) != 1:
            raise ValueError(f"the model has {len(active)} active adapters ({sorted(active)}); name one: "
                             "lora_update_stats(model, adapter=...)")
        adapter = active.pop()
    found = []
    for name, layer in layers:
        factors = _factors(name, layer, adapter)
        if factors is not None:
            found.append(_Adapted(name, layer, *factors, float(layer.scaling[adapter])))
    if not found:
        known = sorted({a for _, m in layers for a in (*m.lora_A, *getattr(m, "lora_embedding_A", {}))})
        raise ValueError(f"adapter={adapter!r} is on none of the model's LoRA layers; adapters: {known}")
    return found


# ---- the maths ---------------------------------------------------------------------------------------------
def base_norm(layer) -> torch.Tensor:
    """||W0||_F of a LoRA layer's base weight as a float64 device scalar, de-quantized (no host read)."""
    base = layer.get_base_layer()
    if not hasattr(base, "weight"):
        raise ValueError(f"a {type(layer).__name__} over a {type(base).__name__}: no single base weight W0")
    with torch.no_grad():
        weight = dequantized_weight(base).detach().reshape(-1)
        # each chunk's norm in float32 (a tree reduction: relative error ~1e-7), their squares summed in float64
        squares = sum(torch.linalg.vector_norm(c.float()).double() ** 2 for c in weight.split(_NORM_CHUNK))
    return squares.sqrt()


@torch.no_grad()
def spectra(layers: Sequence[_Adapted]) -> list[torch.Tensor]:
    """Each layer's singular values of ΔW (float64, descending, on its device), via QR of B and Aᵀ."""
    out: list[torch.Tensor | None] = [None] * len(layers)
    groups: dict[tuple, list[int]] = {}
    for i, item in enumerate(layers):
        groups.setdefault((tuple(item.a.shape), tuple(item.b.shape), item.a.device), []).append(i)
    for members in groups.values():
        # QR in the factors' own precision, at least float32 (backward stable: each σ is then within a few ulps
        # of σ_1); the r x r core and its SVD in float64. (A float64 QR of float32 factors gains nothing and ran
        # 10-40x slower on a busy 2-core CPU.)
        dtype = torch.promote_types(layers[members[0]].a.dtype, torch.float32)
        a = torch.stack([layers[i].a for i in members]).to(dtype)  # (k, r, d_in)
        b = torch.stack([layers[i].b for i in members]).to(dtype)  # (k, d_out, r)
        r_b = torch.linalg.qr(b, mode="r").R.double()  # (k, min(d_out, r), r)
        r_a = torch.linalg.qr(a.transpose(1, 2), mode="r").R.double()  # (k, min(d_in, r), r)
        scale = torch.tensor([abs(layers[i].scaling) for i in members], dtype=torch.float64, device=a.device)
        values = torch.linalg.svdvals(r_b @ r_a.transpose(1, 2)) * scale[:, None]
        for row, i in enumerate(members):
            out[i] = values[row]
    return out  # type: ignore[return-value]


def _update(item: _Adapted, values: Sequence[float], base: float) -> LayerUpdate:
    parts = item.name.split(".")
    norm = math.sqrt(sum(v * v for v in values))
    return LayerUpdate(
        name=item.name, module_type=_module_type(parts), layer=_layer_index(parts), r=int(item.a.shape[0]),
        scaling=item.scaling, shape=(int(item.b.shape[0]), int(item.a.shape[1])), update_norm=norm,
        base_norm=base, rel_norm=norm / base if base > 0 else math.inf,
        singular_values=tuple(float(v) for v in values), effective_rank=effective_rank(values))


def lora_update_stats(model, adapter: str | None = None) -> list[LayerUpdate]:
    """For every layer ``adapter`` (default: the active one) adapts: ||ΔW||/||W0||, ΔW's singular values and its
    effective rank (see the module's docstring). Works on any peft LoRA model, quantized bases included."""
    tracker = UpdateTracker(model, adapter)
    return tracker.updates(tracker.measure().tolist())


def _rows(flat: list[float], width: int) -> list[list[float]]:
    return [flat[i : i + width] for i in range(0, len(flat), width)]


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device):
    """On a CPU, torch on one thread meanwhile: a batch of QRs of d x r matrices is far too small to share, and on
    a busy machine every multi-threaded op waits for a descheduled thread (measured on 2 busy cores: the whole
    measurement of SmolLM2's 210 layers took 240 ms on two threads, 35 ms on one)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---- the trainer's form ----------------------------------------------------------------------------------------
class UpdateTracker:
    """The update statistics of one model, measured repeatedly: the base norms once (they are frozen), then per
    call one float64 device tensor holding, per layer, ||W0|| and the singular values (zero-padded to the
    largest rank). Reading that tensor is the only host read; ``record`` turns what was read into a log entry."""

    def __init__(self, model, adapter: str | None = None) -> None:
        self.layers = adapted_layers(model, adapter)
        device = self.layers[0].a.device
        self.base = torch.stack([base_norm(item.layer).to(device) for item in self.layers])
        self.width = 1 + max(min(item.a.shape[0], item.b.shape[0], item.a.shape[1]) for item in self.layers)

    def measure(self) -> torch.Tensor:
        """(layers x width) float64 on the device, flattened: per layer ||W0||_F, then σ of ΔW (zero-padded)."""
        device = self.base.device
        with _one_cpu_thread(device):
            rows = torch.zeros((len(self.layers), self.width), dtype=torch.float64, device=device)
            rows[:, 0] = self.base
            for i, values in enumerate(spectra(self.layers)):
                rows[i, 1 : 1 + values.numel()] = values.to(device)
            return rows.flatten()

    def updates(self, flat: list[float]) -> list[LayerUpdate]:
        """The LayerUpdate of every layer from what ``measure`` returned, read to the host."""
        out = []
        for item, row in zip(self.layers, _rows(flat, self.width), strict=True):
            n = min(item.a.shape[0], item.b.shape[0], item.a.shape[1])
            out.append(_update(item, row[1 : 1 + n], row[0]))
        return out

    def record(self, flat: list[float]) -> dict:
        """The log entry (``update_grid``) from what ``measure`` returned, read to the host."""
        return update_grid(self.updates(flat))


def _short(x: float) -> float:
    return float(f"{x:.6g}")


def update_grid(updates: Sequence[LayerUpdate]) -> dict:
    """The updates aggregated per decoder block x module type, for a log record and a heatmap.

    ``rel_norm[i][j]`` of block ``layers[i]`` and type ``module_types[j]``: sqrt(Σ||ΔW||²) / sqrt(Σ||W0||²) over
    the modules there (one module in a plain transformer; the experts of an MoE block), None where no module
    is; ``effective_rank[i][j]`` their mean effective rank. ``top``: the module whose update moved its weight
    most (largest rel_norm), with its spectrum. Layers without a block number share the row ``None``.
    """
    types = list(dict.fromkeys(u.module_type for u in updates))  # in the model's order: q, k, v, o, ...
    layers = sorted({u.layer for u in updates}, key=lambda x: (x is None, x if x is not None else 0))
    cells: dict[tuple, list[LayerUpdate]] = {}
    for u in updates:
        cells.setdefault((u.layer, u.module_type), []).append(u)
    rel = [[None] * len(types) for _ in layers]
    ranks = [[None] * len(types) for _ in layers]
    for (layer, kind), members in cells.items():
        i, j = layers.index(layer), types.index(kind)
        base = math.sqrt(sum(u.base_norm**2 for u in members))
        rel[i][j] = _short(math.sqrt(sum(u.update_norm**2 for u in members)) / base) if base > 0 else None
        ranks[i][j] = _short(sum(u.effective_rank for u in members) / len(members))
    top = max(updates, key=lambda u: u.rel_norm)
    return {
        "module_types": types, "layers": layers, "rel_norm": rel, "effective_rank": ranks,
        "r": max(u.r for u in updates),
        "top": {"name": top.name, "rel_norm": _short(top.rel_norm), "effective_rank": _short(top.effective_rank),
                "r": top.r, "singular_values": [_short(v) for v in top.singular_values]},
    }


def tracker_for_run(enabled: bool, model, *, main: bool, sharded: bool, warn) -> UpdateTracker | None:
    """The trainer's tracker: None when switched off, in processes other than the first (rank 0 logs), or when
    it cannot measure this model (sharded parameters, DoRA: said through ``warn``)."""
    if not enabled or not main:
        return None
    if sharded:
        warn("log_lora_stats: not recorded under distributed='fsdp' (each process holds a shard of every "
             "adapter); set log_lora_stats=False to silence this")
        return None
    try:
        return UpdateTracker(model)
    except ValueError as exc:
        warn(f"log_lora_stats: not recorded for this run: {exc}; set log_lora_stats=False to silence this")
        return None
