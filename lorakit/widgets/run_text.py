"""What a run says in words: durations, how it ended, its set-up and the choices it made, what it is doing.

Pure text from lorakit's event payloads (StartInfo, TrainSummary), shared by the dashboard and the panel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorakit.training.events import TrainSummary

__all__ = ["describe_choices", "describe_setup", "describe_summary", "describe_times", "format_duration", "phase_text",
           "progress_text", "step_line"]


def format_duration(seconds: float | None) -> str:
    """Seconds as m:ss or h:mm:ss; '?' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:  # None or NaN or negative
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _seconds(seconds: float) -> str:
    """Seconds in words a reader compares at a glance: '4.2 s' under a minute, else m:ss or h:mm:ss."""
    return f"{seconds:.1f} s" if seconds < 59.95 else format_duration(seconds)


def describe_times(summary: TrainSummary) -> str:
    """Where the run's time went: 'Time: training 55.2 s (92 tokens/s), evaluation 30.1 s, saving 4.0 s;
    1:37 in all (loading and set-up are the rest).' ('' when the summary has no split)."""
    if summary.train_s is None:
        return f"Time: {_seconds(summary.elapsed_s)} in all." if summary.elapsed_s is not None else ""
    speed = f" ({summary.tokens_per_s:,.0f} tokens/s)" if summary.tokens_per_s else ""
    text = (f"Time: training {_seconds(summary.train_s)}{speed}, evaluation {_seconds(summary.eval_s or 0.0)}, "
            f"saving {_seconds(summary.save_s or 0.0)}")
    if summary.elapsed_s is not None:
        text += f"; {_seconds(summary.elapsed_s)} in all (loading and set-up are the rest)"
    return text + "."


def _adapter_on_disk(adapter_dir: str | None) -> bool:
    return bool(adapter_dir) and (Path(adapter_dir) / "adapter_config.json").is_file()


def describe_summary(summary: TrainSummary) -> str:
    """A short text on how a run ended and where its adapter is ('Adapter saved to ...' only when on disk)."""
    headline = {
        "completed": "Completed",
        "stopped": "Stopped",
        "error": "Failed",
        "oom": "Out of memory",
        "interrupted": "Interrupted",
    }.get(summary.status, summary.status)
    text = f"{headline} after {summary.steps_done}/{summary.total_steps} steps"
    if summary.final_loss is not None:
        text += f", final loss {summary.final_loss:.4f}"
    if summary.message:  # the loop's own account (advice on out-of-memory, the error, who stopped it)
        text = summary.message
    text = text.rstrip(".") + "."
    if _adapter_on_disk(summary.adapter_dir):
        text += f" Adapter saved to {summary.adapter_dir}."
    elif summary.adapter_dir:
        text += " No adapter on disk."
    times = describe_times(summary)
    return f"{text} {times}" if times else text


def _choice_value(value: Any) -> str:
    return "on" if value is True else "off" if value is False else str(value)


def describe_choices(choices: dict[str, dict] | None) -> str:
    """The run's resolved settings: 'gradient checkpointing: on (auto: on for a quantized base ...)'."""
    return "; ".join(f"{name.replace('_', ' ')}: {_choice_value(c.get('value'))}"
                     + (f" ({c['reason']})" if c.get("reason") else "")
                     for name, c in (choices or {}).items())


def describe_setup(info: dict) -> str:
    """One paragraph on the run's set-up: device and numerics, trainable share, choices, warnings."""
    parts = [", ".join(f"{key} {info[key]}" for key in ("device", "precision", "quantization") if info.get(key))]
    if (info.get("num_processes") or 1) > 1:
        parts.append(f"{info['num_processes']} processes ({info.get('distributed')}), global batch "
                     f"{info.get('global_batch_size')}")
    if info.get("trainable_params") and info.get("total_params"):
        share = 100 * info["trainable_params"] / info["total_params"]
        parts.append(f"{info['trainable_params']:,} of {info['total_params']:,} parameters trainable "
                     f"({share:.2f} %)")
    text = "; ".join(p for p in parts if p)
    text = f"Set-up: {text}." if text else ""
    choices = describe_choices(info.get("choices"))
    if choices:
        text += f" Choices: {choices}."
    for warning in info.get("warnings") or ():
        text += f" Warning: {warning}"
    return text.strip()


def phase_text(detail: str, done: str = "") -> str:
    """A phase's detail as a status line: "Evaluating the loss on 45 held-out examples…", with how far it is
    when known: "Answering 3 preview prompts: 1 of 3 preview prompts answered…"."""
    detail = detail.strip().rstrip(".")
    if done:
        detail = f"{detail}: {done}" if detail else done
    return (detail[:1].upper() + detail[1:] + "\u2026") if detail else "Running\u2026"


def progress_text(step: int, total: int, last: dict, evaluation: dict | None = None) -> str:
    """The progress bar's label: '12/20 · 0:41 elapsed · ETA 0:35'; during an evaluation or a preview, how far
    it is and the time left: '20/20 · 1:10 elapsed · 16 of 43 answered · ETA 0:12' ('0:08 left of this part'
    before training, when the training's time is not known yet)."""
    if evaluation is None:
        elapsed, eta = format_duration(last.get("elapsed_s")), format_duration(last.get("eta_s"))
        return f"{step}/{total} · {elapsed} elapsed · ETA {eta}"
    text = f"{step}/{total} · {format_duration(evaluation.get('elapsed_s'))} elapsed · {evaluation['detail']}"
    if evaluation.get("eta_s") is not None:
        return f"{text} · ETA {format_duration(evaluation['eta_s'])}"
    if evaluation.get("part_eta_s") is not None:
        return f"{text} · {format_duration(evaluation['part_eta_s'])} left of this part"
    return text


def step_line(history: list[dict], evals: list[dict]) -> str:
    """Where a run is, from its last train record (and eval record): 'Running: step 30, loss 0.1000, ...'."""
    last = history[-1]
    now = f"step {last.get('step')}"
    if last.get("loss") is not None:
        now += f", loss {last['loss']:.4f}"
    if last.get("tokens_per_s") is not None:
        now += f", {last['tokens_per_s']:,.0f} tokens/s"
    if evals and evals[-1].get("eval_loss") is not None:
        now += f", eval loss {evals[-1]['eval_loss']:.4f}"
    return f"Running: {now}."
