"""lorakit from a terminal: train a config headless, prepare the embedded model, export, explain a value.

lorakit train run.yaml [--set max_steps=50] [--resume RUN_DIR] [--num-processes 2]
lorakit check-fit run.yaml [--set batch_size=auto]   (token lengths, then the worst batch planned and measured)
lorakit prepare-model
lorakit export RUN_DIR OUT_DIR
lorakit explain 0.1 --format bf16
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from lorakit.training.events import MetricsSink

EXIT_CODES = {"completed": 0, "stopped": 0, "interrupted": 130, "error": 1, "oom": 1}


class ConsoleProgress(MetricsSink):
    """A one-line progress bar on stderr: step, loss, tokens/s, ETA (redrawn at most 5 times a second)."""

    def __init__(self, stream=None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.width, self.total, self.last_draw = width, 1, 0.0

    def on_train_start(self, info: dict) -> None:
        self.total = max(1, info["total_steps"])
        self.stream.write(
            f"lorakit: {info['trainable_params']:,} trainable of {info['total_params']:,} parameters, "
            f"{info['precision']}/{info['quantization']} on {info['device']}{_processes(info)} -> {info['output_dir']}\n"
        )
        for name, choice in (info.get("choices") or {}).items():
            self.stream.write(f"{name}: {choice['value']} ({choice['reason']})\n")
        for warning in info.get("warnings", []):
            self.stream.write(f"warning: {warning}\n")

    def on_log(self, record: dict) -> None:
        now = time.monotonic()
        if now - self.last_draw < 0.2 and record["step"] < self.total:
            return
        self.last_draw = now
        done = int(self.width * record["step"] / self.total)
        bar = "#" * done + "-" * (self.width - done)
        self.stream.write(
            f"\r[{bar}] {record['step']}/{self.total} loss {record['loss']:.4f} "
            f"{record['tokens_per_s']:.0f} tok/s eta {record['eta_s']:.0f}s "
        )
        self.stream.flush()

    def on_phase(self, phase: str, detail: str) -> None:
        """What the run is busy with between steps ("compiling 30 decoder blocks", then the compile time);
        the steps themselves show on the bar."""
        if detail and not detail.startswith("training"):
            self.stream.write(f"\n{detail}\n")
            self.stream.flush()

    def on_progress(self, record: dict) -> None:
        """How far an evaluation or a preview is ("16 of 43 answered"), on a line redrawn in place."""
        self.stream.write(f"\r  {record['detail']}" + ("\n" if record["done"] == record["total"] else ""))
        self.stream.flush()

    def on_eval(self, record: dict) -> None:
        parts = [f"eval step {record['step']}"]
        if record.get("eval_loss") is not None:
            parts.append(f"loss {record['eval_loss']:.4f}")
        if record.get("exact_match") is not None:
            parts.append(f"exact match {record['exact_match']:.1%}")
        if record.get("format_match") is not None:
            parts.append(f"format match {record['format_match']:.1%}")
        self.stream.write("\n" + ", ".join(parts) + "\n")

    def on_train_end(self, summary) -> None:
        from lorakit.widgets.run_text import describe_times  # plain text: no widget library is imported

        self.stream.write(f"\n{summary.status}: {summary.message}\n")
        times = describe_times(summary)
        if times:
            self.stream.write(times + "\n")
        self.stream.flush()


def _processes(info: dict) -> str:
    """" x 2 processes (ddp), global batch 8" for a multi-process run, else ""."""
    n = info.get("num_processes") or 1
    if n == 1:
        return ""
    return f" x {n} processes ({info.get('distributed')}), global batch {info.get('global_batch_size')}"


def _parse_override(text: str) -> tuple[str, object]:
    import yaml

    key, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--set expects KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _settings(args: argparse.Namespace) -> dict:
    """The config file's fields with the --set overrides."""
    from lorakit.training.config_files import read_mapping

    data = read_mapping(args.config) if args.config else {}
    data.update(_parse_override(item) for item in args.set)
    return data


def _cmd_check_fit(args: argparse.Namespace) -> int:
    from lorakit.training import TrainConfig, check_fit, token_lengths

    config = TrainConfig.from_dict(_settings(args))
    print(token_lengths(config))
    report = check_fit(config)
    print(report)
    return 0 if report.fits else 1


def _cmd_train(args: argparse.Namespace) -> int:
    from lorakit.training import TrainConfig, train
    from lorakit.training.distributed import launched_world

    data = _settings(args)
    if args.num_processes is not None:
        data["num_processes"] = args.num_processes
    world, rank = launched_world()
    if world > 1:  # one of the processes torchrun / accelerate launch started: as many as were launched
        data.setdefault("num_processes", world)
    config = TrainConfig.from_dict(data)
    if config.num_processes > 1 and world == 1:
        return _launch_processes(args, config)
    summary = train(config, sinks=[ConsoleProgress()] if rank == 0 else [], resume_from=args.resume)
    if rank != 0:
        return EXIT_CODES[summary.status]
    for row in summary.preview:
        held_out = f"\n  held-out answer: {row['expected']}" if "expected" in row else ""
        print(f"Q: {row['prompt']}{held_out}\n  before: {row['before']}\n  after:  {row['after']}")
    if summary.exact_match_after is not None:
        print(f"exact match: {summary.exact_match_before:.1%} before, {summary.exact_match_after:.1%} after")
    print(summary.output_dir)
    return EXIT_CODES[summary.status]


def _launch_processes(args: argparse.Namespace, config) -> int:
    """Re-run this command under torchrun in config.num_processes processes, after checking the config here."""
    import os
    import subprocess

    from lorakit.training.launch import check_launch, fixed_output_dir, threads_per_process, torchrun_command

    check_launch(config, args.resume)  # bad input fails here, before any process starts
    out = fixed_output_dir(config, args.resume).output_dir  # one run folder for every rank
    command = torchrun_command(config.num_processes, [*args.argv, "--set", f"output_dir={out}"])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process(config.num_processes)))
    code = subprocess.run(command, env=env, check=False).returncode
    return 0 if code == 0 else (130 if code in (130, -2) else 1)


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    from lorakit.training.embedded import ensure_embedded

    print(ensure_embedded(verbose=True))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lorakit.training.export import export_merged

    print(export_merged(args.run_dir, args.out_dir))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from lorakit.formats import explain

    e = explain(args.value, args.format)
    print(f"{e.input_text} in {e.format}: bits {e.bits} ({e.hex}), {e.value_class}")
    print(f"stored {e.stored_exact}; abs error {e.abs_error}, rel error {e.rel_error}")
    print(e.formula)
    if e.note:
        print(e.note)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorakit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run a LoRA fine-tune from a YAML/JSON config")
    train.add_argument("config", nargs="?", help="YAML or JSON file of TrainConfig fields (optional)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue from RUN_DIR/checkpoint")
    train.add_argument("--num-processes", type=int, metavar="N",
                       help="train in N processes (data parallel, one per GPU) started through torchrun")
    train.set_defaults(func=_cmd_train)
    fit = sub.add_parser("check-fit", help="a config's token lengths, and its worst batch planned and measured")
    fit.add_argument("config", nargs="?", help="YAML or JSON file of TrainConfig fields (optional)")
    fit.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    fit.set_defaults(func=_cmd_check_fit)
    prepare = sub.add_parser("prepare-model", help="convert and cache the embedded SmolLM2 model")
    prepare.set_defaults(func=_cmd_prepare_model)
    export = sub.add_parser("export", help="merge a run's adapter into its base model and save it")
    export.add_argument("run_dir")
    export.add_argument("out_dir")
    export.set_defaults(func=_cmd_export)
    explain = sub.add_parser("explain", help="how a number format stores a value")
    explain.add_argument("value")
    explain.add_argument("--format", default="fp16")
    explain.set_defaults(func=_cmd_explain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # a multi-process train re-runs the same command in every process
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # configuration problems: the message is the advice
        print(f"lorakit {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
