"""The suite's one tiny-model builder, one recorder sink and one tiny run config.

tests/conftest.py wraps these in fixtures; benchmarks/hf_baseline.py builds its models with ``tiny_causal_lm``
too. A plain module (not conftest.py itself) so that code outside pytest can import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorakit.training.events import MetricsSink

# Per architecture: the transformers classes and a small default shape (any field can be overridden by keyword).
SHAPES: dict[str, dict[str, Any]] = {
    "llama": dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  tie_word_embeddings=True, pad_token_id=0),
    # Gemma-2 has no SDPA path in transformers for softcapping: eager attention
    "gemma2": dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16,
                   max_position_embeddings=256, sliding_window=64, final_logit_softcapping=0.05, pad_token_id=0,
                   attn_implementation="eager"),
}
CLASSES = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "gemma2": ("Gemma2Config", "Gemma2ForCausalLM")}

# One repeated sentence: even a random model learns it within a few steps, so "the loss falls" is a sharp test.
SENTENCE = ["the quick brown fox jumps over the lazy dog"] * 8


def tiny_causal_lm(arch: str = "llama", *, seed: int = 0, **shape: Any):
    """A random-initialised causal LM of ``arch`` ("llama" or "gemma2"), fp32, on the CPU.

    ``shape`` overrides any config field of the defaults in SHAPES (hidden_size, vocab_size, tie_word_embeddings,
    final_logit_softcapping, ...). The weights depend only on ``seed`` and the shape.
    """
    import torch
    import transformers

    config_name, model_name = CLASSES[arch]
    config = getattr(transformers, config_name)(**{**SHAPES[arch], **shape})
    torch.manual_seed(seed)
    return getattr(transformers, model_name)(config)


def save_tiny_model(folder: str | Path, tokenizer, arch: str = "llama", *, seed: int = 0, **shape: Any) -> Path:
    """``tiny_causal_lm`` sized to ``tokenizer`` (vocabulary and special ids), saved with it as a local HF folder."""
    special = {name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    model = tiny_causal_lm(arch, seed=seed, **{"vocab_size": len(tokenizer), **special, **shape})
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Recorder(MetricsSink):
    """A MetricsSink that keeps every event in order, and asks a StopHandle to stop after step ``stop_at``."""

    def __init__(self, stop=None, stop_at: int | None = None) -> None:
        self.events: list[tuple[str, Any]] = []  # ("start" | "log" | "eval" | "end", payload)
        self.phase_events: list[tuple[str, str]] = []  # (phase, detail), kept apart from the events
        self.stop, self.stop_at = stop, stop_at

    def on_phase(self, phase, detail):
        self.phase_events.append((phase, detail))

    def on_train_start(self, info):
        self.events.append(("start", info))

    def on_log(self, record):
        self.events.append(("log", record))
        if self.stop is not None and self.stop_at is not None and record["step"] >= self.stop_at:
            self.stop.request_stop("test")

    def on_eval(self, record):
        self.events.append(("eval", record))

    def on_train_end(self, summary):
        self.events.append(("end", summary))

    def of(self, kind: str) -> list:
        """The payloads of every event of one kind ("start", "log", "eval", "end"), in order."""
        return [payload for k, payload in self.events if k == kind]

    def logs(self) -> list[dict]:
        return self.of("log")

    def losses(self) -> list[float]:
        return [r["loss"] for r in self.of("log")]

    def phases(self) -> list[str]:
        return [phase for phase, _ in self.phase_events]


def tiny_run_config(model_dir: str | Path, folder: str | Path, **overrides: Any):
    """A TrainConfig of a few CPU steps of the tiny model on SENTENCE, logging every step, writing to folder/run."""
    from lorakit.training import TrainConfig

    settings = dict(
        model=str(model_dir),
        dataset=SENTENCE,
        batch_size=4,
        max_steps=6,
        logging_steps=1,
        learning_rate=1e-2,
        eval_split=0.0,
        max_seq_length=32,
        output_dir=str(Path(folder) / "run"),
        device="cpu",  # these runs are about the CPU path; a GPU machine runs them there too
    )
    settings.update(overrides)
    return TrainConfig(**settings)
