"""The baseline side of the trainer benchmarks: a random Llama-shaped model on disk, synthetic data, and
`transformers.Trainer` + `peft.get_peft_model` timed step by step.

Throughput on both sides is measured the same way: wall-clock between the end of the first timed step and the
end of the last, over the tokens of the steps in between; model loading, the first step (allocator warm-up)
and saving are outside the window.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
N_SPECIAL = 4  # ids 0..3 are <unk>, <s>, </s>, <pad>


@dataclass(frozen=True)
class Shape:
    """A Llama-shaped model; the defaults are issue 6's CPU shape."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 688
    vocab_size: int = 32000
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False

    def matmul_params(self) -> int:
        """Weights that take part in a matmul per token: every Linear in the layers, plus the output head."""
        head_dim = self.hidden_size // self.num_attention_heads
        attn = 2 * self.hidden_size**2 + 2 * self.hidden_size * self.num_key_value_heads * head_dim
        mlp = 3 * self.hidden_size * self.intermediate_size
        return self.num_hidden_layers * (attn + mlp) + self.hidden_size * self.vocab_size


LLAMA_3_2_1B = Shape(2048, 16, 32, 8, 8192, 128256, 4096, tie_word_embeddings=True)


def build_model_dir(shape: Shape, directory: str | Path | None = None, seed: int = 0) -> Path:
    """Save a random-initialised LlamaForCausalLM (fp32) and a one-word-one-token tokenizer; return the folder.

    The model comes from the test suite's one tiny-model builder (tests/tiny.py), at this shape.
    """
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny import tiny_causal_lm

    path = Path(directory or tempfile.mkdtemp(prefix="lorakit-bench-model-"))
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # a 1B init takes minutes on a CPU
        model = tiny_causal_lm("llama", seed=seed, **shape.__dict__, bos_token_id=1, eos_token_id=2, pad_token_id=3)
    model.save_pretrained(path)
    del model
    word_tokenizer(shape.vocab_size).save_pretrained(path)
    return path


def word_tokenizer(vocab_size: int):
    """A tokenizer in which the word 't<i>' is token i: texts built from ids tokenise back to exactly those ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {UNK: 0, BOS: 1, EOS: 2, PAD: 3} | {f"t{i}": i for i in range(N_SPECIAL, vocab_size)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=UNK, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=1 << 20
    )


def _phrase_stream(rng: np.random.Generator, vocab_size: int, n_tokens: int) -> np.ndarray:
    """Tokens from 64 fixed 16-token phrases in random order: learnable, so the loss falls."""
    phrases = np.random.default_rng(1234).integers(N_SPECIAL, vocab_size, size=(64, 16))
    picks = rng.integers(0, len(phrases), size=n_tokens // 16 + 1)
    return phrases[picks].reshape(-1)[:n_tokens]


def fixed_length_ids(n: int, length: int, vocab_size: int, seed: int = 0) -> list[list[int]]:
    """`n` token-id sequences of exactly `length` tokens."""
    rng = np.random.default_rng(seed)
    return [_phrase_stream(rng, vocab_size, length).tolist() for _ in range(n)]


def lognormal_lengths(n: int, median: int = 128, max_len: int = 1024, sigma: float = 0.8, seed: int = 0) -> list[int]:
    """Log-normal lengths with the given median, clipped to [8, max_len]."""
    rng = np.random.default_rng(seed)
    lengths = np.exp(rng.normal(math.log(median), sigma, size=n)).round().astype(int)
    return np.clip(lengths, 8, max_len).tolist()


def variable_length_ids(lengths: list[int], vocab_size: int, seed: int = 0) -> list[list[int]]:
    """One token-id sequence per requested length."""
    rng = np.random.default_rng(seed)
    return [_phrase_stream(rng, vocab_size, n).tolist() for n in lengths]


def ids_to_text(ids: list[int]) -> str:
    """The text that `word_tokenizer` maps back to `ids`."""
    return " ".join(f"t{i}" for i in ids)


@dataclass
class RunResult:
    """What one timed training run produced (either side)."""

    tokens_per_s: float
    losses: dict[int, float]
    window_s: float
    window_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


def window_throughput(marks: list[tuple[float, int]]) -> tuple[float, float, int]:
    """(tokens/s, seconds, tokens) between the first and last (time, cumulative tokens) mark."""
    if len(marks) < 2:
        raise ValueError(f"need at least 2 step marks to time a window, got {len(marks)}")
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0), t1 - t0, n1 - n0


@dataclass
class RunSettings:
    """Hyper-parameters shared with the lorakit side; defaults follow lorakit's TrainConfig where it has one."""

    steps: int = 8
    batch_size: int = 4
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 2
    seed: int = 0
    r: int = 8
    lora_alpha: int = 16
    max_seq_length: int = 256
    logging_steps: int = 1
    optim: str = "adamw_torch_fused"  # transformers' default on torch >= 2.8; lorakit also uses fused AdamW
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 | fp16
    quantization: str = "none"  # none | int8 | nf4
    gradient_checkpointing: bool = False
    kbit_prepare: bool = True  # peft.prepare_model_for_kbit_training for quantized models, as shipped


def _load_hf_model(model_dir: Path, s: RunSettings):
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[s.precision]
    kwargs: dict[str, Any] = {"dtype": dtype}  # frozen base in the run's precision, as lorakit stores it
    if s.quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype
        )
    elif s.quantization == "int8":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)


def _peft_model(model, s: RunSettings):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if s.quantization != "none" and s.kbit_prepare:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=s.gradient_checkpointing)
    cfg = LoraConfig(r=s.r, lora_alpha=s.lora_alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


COLLATES = {
    "fixed": "equal-length examples, no padding",
    "padded": "padded to the longest in each batch (DataCollatorForLanguageModeling)",
    "grouped": "padded per batch, batches grouped by length (train_sampling_strategy='group_by_length')",
    "flatten": "padding-free: each batch flattened into one row (DataCollatorWithFlattening)",
}


class _CountingCollator:
    """Wraps a collator and records each batch's non-padding tokens, on the CPU, in the order batches are made
    (which is the order the steps see them, whatever the sampler and prefetching do)."""

    def __init__(self, inner) -> None:
        self.inner, self.tokens = inner, []

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch.get("attention_mask")
        self.tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch


def _collator(collate: str, with_labels: bool):
    """The collator for a collate mode; examples that carry labels keep them (padded with -100)."""
    from transformers import (
        DataCollatorForLanguageModeling,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
    )

    if collate == "flatten":
        return DataCollatorWithFlattening(return_position_ids=True)  # uses the examples' labels when they have them
    tokenizer = word_tokenizer(N_SPECIAL + 1)  # only the pad id is used
    if with_labels:
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    return DataCollatorForLanguageModeling(tokenizer, mlm=False)


def hf_train(model_dir: Path, examples: list, s: RunSettings, collate: str = "fixed",
             callbacks: tuple = (), trainer_kwargs: dict | None = None) -> RunResult:
    """Train with transformers.Trainer + peft for `s.steps` steps over `examples`; time steps 2..N.

    ``examples``: token-id lists (loss on every token) or {"input_ids", "labels"} dicts (labels -100 where
    no loss is taken). ``collate``: one of COLLATES. ``trainer_kwargs``: extra TrainingArguments (e.g.
    use_liger_kernel=True). Examples are visited in order (a sequential sampler), except with "grouped".
    """
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    if collate not in COLLATES:
        raise ValueError(f"collate={collate!r}; allowed: {', '.join(COLLATES)}")
    data = [e if isinstance(e, dict) else {"input_ids": e} for e in examples]
    if collate == "fixed" and len({len(e["input_ids"]) for e in data}) > 1:
        raise ValueError("collate='fixed' needs equal-length examples")
    if s.steps * s.batch_size > len(examples):
        raise ValueError(f"{len(examples)} examples < steps x batch_size = {s.steps * s.batch_size}: give more")
    torch.manual_seed(s.seed)  # as lorakit does before loading: the same RNG stream initialises LoRA A
    model = _peft_model(_load_hf_model(model_dir, s), s)
    if s.gradient_checkpointing and s.quantization == "none":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    collator = _CountingCollator(_collator(collate, with_labels="labels" in data[0]))
    marks: list[tuple[float, int]] = []
    losses: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            marks.append((time.perf_counter(), sum(collator.tokens[: state.global_step])))

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="lorakit-bench-hf-"), max_steps=s.steps,
        per_device_train_batch_size=s.batch_size, learning_rate=s.learning_rate,
        lr_scheduler_type=s.lr_scheduler_type, warmup_steps=s.warmup_steps, logging_steps=s.logging_steps,
        seed=s.seed, optim=s.optim, weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm,
        bf16=s.precision == "bf16", fp16=s.precision == "fp16", use_cpu=not torch.cuda.is_available(),
        save_strategy="no", report_to="none", disable_tqdm=True,
        train_sampling_strategy="group_by_length" if collate == "grouped" else "sequential",
        dataloader_pin_memory=False, remove_unused_columns=False,
        gradient_checkpointing=s.gradient_checkpointing and s.quantization == "none",
        **(trainer_kwargs or {}),
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator,
                      callbacks=[Clock(), *callbacks])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout, which buries the table
    trainer.train()
    tps, secs, toks = window_throughput(marks)
    extra = _cuda_memory()
    del model, trainer
    return RunResult(tps, losses, secs, toks, extra)


def _cuda_memory() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"peak_allocated_bytes": torch.cuda.max_memory_allocated(),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved()}
