"""Memory per device when ``num_processes`` devices train together (``distributed`` = "ddp" or "fsdp").

* DDP: every device holds the whole model, its optimizer state and a full batch of ``batch_size``; DDP adds
  its gradient buckets (a second copy of the gradients, kept from construction on, since accelerate leaves
  ``gradient_as_bucket_view`` off).
* FSDP (per decoder layer, as accelerate wraps transformers models): weights, gradients and optimizer states
  are sharded over the devices. The root unit (embeddings, head, final norm) stays gathered for the whole
  step; a decoder layer is gathered while it runs and the next one is prefetched, so two layers are whole at
  a time; in backward one layer's full gradients exist until they are reduce-scattered. Activations stay
  per device.

Not measured on several GPUs yet: these are the mechanisms as torch documents them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lorakit.sizing.architecture import Architecture
from lorakit.sizing.peak import Phase
from lorakit.sizing.settings import Settings
from lorakit.sizing.storage import base_weight_bytes, in_decoder_layer


@dataclass(frozen=True)
class DeviceShare:
    """What one device holds of the step-long state, and how the gradients divide."""

    weights: int
    trainable: int
    optimizer: int
    gradient_share: float = 1.0  # fraction of the gradients a device keeps (1 / N under FSDP)
    buckets: int = 0  # DDP's gradient buckets
    unit_gradients: int = 0  # FSDP: one layer's unsharded gradients during backward


def per_device(arch: Architecture, s: Settings, weights: int, trainable: int, optimizer: int) -> DeviceShare:
    """The share of the weights, trainable weights and optimizer state one device holds."""
    n = s.num_processes
    if n == 1:
        return DeviceShare(weights, trainable, optimizer)
    if s.distributed == "ddp":
        return DeviceShare(weights, trainable, optimizer, buckets=trainable)
    layers = arch.num_layers or 1
    frozen_layers = 0 if s.full else base_weight_bytes(arch, s.quant, s.double_quant, s.dtype_bytes, "layers")
    frozen_root = 0 if s.full else weights - frozen_layers
    trainable_root = root_elements(arch) * s.trainable_bytes if s.full else 0
    trainable_layers = trainable - trainable_root
    gathered = 2  # the running layer and the prefetched one are whole
    return DeviceShare(
        weights=frozen_root + frozen_layers // n + gathered * (frozen_layers // layers),
        trainable=trainable_root + trainable_layers // n + gathered * (trainable_layers // layers),
        optimizer=optimizer // n,
        gradient_share=1 / n,
        unit_gradients=trainable_layers // layers,
    )


def root_elements(arch: Architecture) -> int:
    """Parameters outside the decoder layers (embeddings, untied head, final norm)."""
    linears = sum(lin.params for lin in arch.linears if not in_decoder_layer(lin.name))
    return linears + sum(n for name, n in arch.other_params if not in_decoder_layer(name))


def shard_phase(phase: Phase, s: Settings, device: DeviceShare) -> Phase:
    """A phase as one device holds it: its share of the gradients, plus DDP's buckets or FSDP's gathered layer."""
    if s.num_processes == 1:
        return phase
    unit = device.unit_gradients if phase.name in ("decoder backward", "layer recompute") else 0
    gradients = int(phase.gradients * device.gradient_share) + device.buckets + unit
    return replace(phase, gradients=gradients)
