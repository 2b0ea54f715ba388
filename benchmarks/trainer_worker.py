"""One training run in a fresh process, so its peak RSS is its own: `python trainer_worker.py SPEC.json`.

The spec names the side ("lorakit" or "hf"), the saved model folder, the examples (texts for lorakit, token
ids for the Trainer), the RunSettings fields and the side's options; the worker prints one JSON line with the
RunResult fields plus ``peak_rss_bytes`` (ru_maxrss: everything the process ever held, imports included,
which both sides pay alike).
"""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import asdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]


def main(spec_path: str) -> None:
    import bench_trainer as bt
    import hf_baseline as hb
    import torch

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    s = hb.RunSettings(**spec["settings"])
    path = Path(spec["model_dir"])
    if spec["side"] == "lorakit":
        result = bt.lorakit_train(path, spec["examples"], s, **spec.get("options", {}))
    else:
        result = hb.hf_train(path, spec["examples"], s, **spec.get("options", {}))
    out = asdict(result)
    out["losses"] = {str(k): v for k, v in result.losses.items()}
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print("RESULT " + json.dumps(out, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
