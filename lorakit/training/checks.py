"""The run's inputs checked before any weights load and before its folder exists: the data (the file, each
record's shape, an empty dataset, examples that all exceed max_seq_length) and the model's name (a local folder,
the embedded model, or a hub id that is cached or answers). Each failure is a ValueError that names the problem
and the fix; nothing has been written yet, so a refused run leaves no folder behind.

Order: the data first (reading it costs nothing), then the model's name, its architecture on the meta device,
its tokenizer (a cached load the run reuses), and last the lengths, which need the tokenizer.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from lorakit.training.config import TrainConfig
from lorakit.training.data import load_records, tokenize_record
from lorakit.training.embedded import EMBEDDED_NAME, resolve_model
from lorakit.training.modeling import check_model_on_meta, load_tokenizer
from lorakit.training.records import check_records

__all__ = ["HUB_TIMEOUT_S", "check_dataset", "check_examples_fit", "check_model_name", "check_run_inputs"]

HUB_TIMEOUT_S = 3.0  # one HEAD request for the model's config.json: answered in well under a second online


def check_run_inputs(config: TrainConfig, hub_timeout_s: float = HUB_TIMEOUT_S) -> str:
    """Everything about the run's data and model that can be checked without its weights; returns the model's
    folder (or hub id) for ``from_pretrained``. ValueError with the fix otherwise."""
    records = check_dataset(config)
    path = check_model_name(config.model, hub_timeout_s)
    check_model_on_meta(config, path)
    check_examples_fit(config, load_tokenizer(config, path), records)
    return path


def check_dataset(config: TrainConfig) -> list:
    """The training records (a built-in task's training split), read and every one's shape checked."""
    records = load_records(config.dataset)
    check_records(records)
    return records


def check_examples_fit(config: TrainConfig, tokenizer: Any, records: list) -> None:
    """ValueError when every example is longer than max_seq_length (each would be cut); stops at the first that
    fits, so a dataset that is fine costs one example's tokenization."""
    limit, shortest = config.max_seq_length, None
    for record in records:
        tokens = len(tokenize_record(record, tokenizer).input_ids)
        if tokens <= limit:
            return
        shortest = tokens if shortest is None else min(shortest, tokens)
    raise ValueError(
        f"every one of the {len(records)} training examples is longer than max_seq_length={limit} tokens (the "
        f"shortest has {shortest}, chat template included), so every example would be cut, answers first. Raise "
        f"max_seq_length to at least {shortest}, or split the examples into shorter ones."
    )


# ---- the model's name ------------------------------------------------------------------------------------------
def check_model_name(name: str, hub_timeout_s: float = HUB_TIMEOUT_S) -> str:
    """What ``from_pretrained`` gets for config.model: the embedded model's folder, a local folder with a
    config.json, or a hub id that is in the local cache or that the hub answers for within ``hub_timeout_s``."""
    if name == "embedded":
        return resolve_model(name)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"model={name!r} is a {'folder' if path.is_dir() else 'file'} without a config.json; "
                             "give a Hugging Face model folder (config.json, weights, tokenizer files)")
        return str(path)
    if _looks_like_a_path(name):
        raise ValueError(f"model={name!r}: no such folder.{_fix(name)}")
    preset = _preset_hub_id(name)
    if preset:
        raise ValueError(f"model={name!r} is a planner preset (an architecture without weights). To train that "
                         f"model, give its hub id model={preset!r} on a machine with a network, or 'embedded' "
                         f"for the built-in {EMBEDDED_NAME}.")
    problem = hub_problem(name, hub_timeout_s)
    if problem:
        raise ValueError(f"model={name!r} is not a local folder, not 'embedded' and not a planner preset, and "
                         f"{problem}.{_fix(name)}")
    return name


def _looks_like_a_path(name: str) -> bool:
    """A name only a path has: './x', '/x', '~/x', 'a/b/c', a Windows drive; a hub id is at most 'org/name'."""
    return name.startswith((".", "/", "~", "\\")) or name.count("/") > 1 or (len(name) > 1 and name[1] == ":")


def _fix(name: str) -> str:
    """What to give instead (a close spelling of the embedded model's name is suggested by it)."""
    close = difflib.get_close_matches(name.rsplit("/", 1)[-1].lower(), [EMBEDDED_NAME.lower(), "embedded"],
                                      n=1, cutoff=0.75)
    hint = f" Did you mean model='embedded' (the built-in {EMBEDDED_NAME})?" if close else ""
    example = "" if "/" in name else " such as 'HuggingFaceTB/SmolLM2-135M-Instruct'"
    return f"{hint} Give 'embedded', a local model folder, or a hub id{example} on a machine that reaches huggingface.co."


def _preset_hub_id(name: str) -> str | None:
    """The hub id a planner preset of this exact name describes (None: not a preset)."""
    from lorakit.sizing.architecture import PRESETS, load_config_dict

    if name not in PRESETS:
        return None
    return load_config_dict(name)[0].get("_name_or_path") or name


def hub_problem(repo_id: str, timeout_s: float) -> str | None:
    """None when ``repo_id``'s config.json is in the local Hugging Face cache or the hub has it; else why not.

    One HEAD request, no retries (transformers retries an unreachable hub for about 25 s before it says so).
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        HFValidationError,
        RepositoryNotFoundError,
        validate_repo_id,
    )

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return "it is not a valid hub id ('org/name')"
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return None
    if _offline():
        return "it is not in the local Hugging Face cache (HF_HUB_OFFLINE is set, so the hub is not asked)"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout_s)
    except GatedRepoError:
        return (f"it is a gated hub model: accept its licence on https://huggingface.co/{repo_id} and log in "
                "(`hf auth login`)")
    except RepositoryNotFoundError:
        return "the hub has no model of that name (or it is private: log in with `hf auth login`)"
    except EntryNotFoundError:
        return "the hub repository has no config.json: it is not a transformers model"
    except Exception as exc:  # noqa: BLE001 -- a DNS failure, a refused connection, a timeout: all say the same
        return f"huggingface.co cannot be reached to look it up ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def _offline() -> bool:
    """True when Hugging Face's offline mode is set (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(k, "").upper() in ("1", "ON", "YES", "TRUE")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
