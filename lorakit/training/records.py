"""What a dataset record may look like, said once: the trainer tokenizes by it, the checks before a run refuse
by it, and TrainConfig's help, the README and the TrainerPanel's tooltip show ``DATASET_HELP``.

Pure Python (no torch): ``records_from`` reads a dataset argument into a list of records, ``record_kind`` names
a record's shape or says, with the fix, why it has none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DATASET_HELP", "FILE_SUFFIXES", "KINDS", "check_records", "record_kind", "records_from"]

# kind -> what it is and where the loss is taken
KINDS = {
    "text": 'a string, or {"text": "..."}: plain text, loss on every token',
    "pair": '{"prompt": "...", "completion": "..."}: loss on the completion only',
    "messages": '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}: '
                "a chat, loss on every assistant turn",
}
FILE_SUFFIXES = (".jsonl", ".json", ".txt")

DATASET_HELP = (
    "dataset: a built-in task ('builtin': number-format facts answered with a bare number; 'builtin-json': "
    "the same facts answered as one JSON line), or your own examples: a list, a datasets.Dataset (one split, "
    "e.g. ds['train']), or a file path. Each example is one of: "
    + "; ".join(KINDS.values())
    + ". Files: .jsonl (one JSON record per line), .json (a JSON list of records), .txt (examples separated "
    "by a blank line). A fraction of your examples (eval_split) is held out for the eval loss and the before/after "
    "preview."
)

# keys people bring from other formats -> the prompt/completion they mean (the fix a message suggests)
_PAIR_SYNONYMS = (("question", "answer"), ("instruction", "output"), ("input", "output"), ("prompt", "response"),
                  ("query", "response"), ("instruction", "response"), ("prompt", "answer"), ("input", "target"),
                  ("source", "target"), ("user", "assistant"))


def record_kind(record: Any, index: int | None = None) -> str:
    """The record's shape ("text", "pair" or "messages"); ValueError naming the record and the fix otherwise."""
    if isinstance(record, str):
        return "text"
    where = f"dataset record {index}" if index is not None else "dataset record"
    if isinstance(record, Mapping):
        if "messages" in record:
            _check_messages(record["messages"], where)
            return "messages"
        if "prompt" in record and "completion" in record:
            for key in ("prompt", "completion"):
                if not isinstance(record[key], str):
                    raise ValueError(f"{where}: {key!r} must be a string, not {type(record[key]).__name__}")
            return "pair"
        if "text" in record:
            if not isinstance(record["text"], str):
                raise ValueError(f"{where}: 'text' must be a string, not {type(record['text']).__name__}")
            return "text"
        keys = ", ".join(repr(k) for k in record) or "none"
        raise ValueError(f"{where} has keys {keys}; lorakit reads {_shapes()}.{_rename_hint(record)}")
    raise ValueError(f"{where} is a {type(record).__name__} ({str(record)[:60]!r}); lorakit reads {_shapes()}")


def _shapes() -> str:
    return ('a string, {"text": ...}, {"prompt": ..., "completion": ...} or {"messages": [{"role": ..., '
            '"content": ...}, ...]}')


def _rename_hint(record: Mapping) -> str:
    for prompt, completion in _PAIR_SYNONYMS:
        if prompt in record and completion in record:
            return (f" Rename them: [{{'prompt': r[{prompt!r}], 'completion': r[{completion!r}]}} for r in "
                    "records]")
    if "conversations" in record:
        return (" For ShareGPT-style {'conversations': [{'from', 'value'}]}, convert each turn to "
                "{'role': 'user' | 'assistant', 'content': ...} under 'messages'")
    return ""


def _check_messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{'role', 'content'}} turns")
    for turn in messages:
        if not isinstance(turn, Mapping) or "role" not in turn or "content" not in turn:
            raise ValueError(f"{where}: every turn of 'messages' needs 'role' and 'content', got {str(turn)[:60]!r}")
    if not any(turn["role"] == "assistant" for turn in messages):
        raise ValueError(f"{where}: no 'assistant' turn, so there is nothing to learn (the loss is taken on the "
                         "assistant's turns)")


def check_records(records: list) -> dict[str, int]:
    """Every record's shape checked (ValueError at the first bad one); the count of each kind."""
    counts: dict[str, int] = {}
    for index, record in enumerate(records):
        kind = record_kind(record, index)
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def records_from(dataset: Any) -> list:
    """A dataset argument that is not a built-in task as a list of records: a list, a datasets.Dataset or a
    file. ValueError for what lorakit does not read (a missing file, a mapping of splits, an empty dataset)."""
    if isinstance(dataset, (str, Path)):
        records = read_file(Path(dataset).expanduser())
    elif isinstance(dataset, Mapping):  # a dict of splits (datasets.DatasetDict), or one record
        splits = ", ".join(repr(k) for k in dataset.keys())
        raise ValueError(f"dataset is a mapping ({splits}), not a list of examples; pick one split, e.g. "
                         "dataset=ds['train'] (the held-out part is cut from it by eval_split)")
    elif hasattr(dataset, "__iter__"):
        records = list(dataset)  # a list, or a datasets.Dataset (iterates as dicts)
    else:
        raise ValueError(f"dataset={dataset!r}: expected a built-in task name, a list of examples, a "
                         "datasets.Dataset or a file path")
    if not records:
        raise ValueError(f"dataset is empty: {_describe(dataset)} holds no examples")
    return records


def _describe(dataset: Any) -> str:
    return repr(str(dataset)) if isinstance(dataset, (str, Path)) else f"the {type(dataset).__name__} given"


def read_file(path: Path) -> list:
    """The records of a .jsonl, .json or .txt file; ValueError naming the file (and the line) when it cannot."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ValueError(f"dataset={str(path)!r} {what} (give a built-in task such as 'builtin', a list of "
                         f"examples, or a {'/'.join(FILE_SUFFIXES)} file)")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ValueError(f"dataset={str(path)!r}: lorakit reads {', '.join(FILE_SUFFIXES)} files, not "
                         f"{suffix or 'files without a suffix'}")
    text = path.read_text(encoding="utf-8")
    if suffix == ".txt":  # blank lines separate examples, so a paragraph is one example
        return [block.strip() for block in text.split("\n\n") if block.strip()]
    if suffix == ".json":
        data = _json(text, path, None)
        if not isinstance(data, list):
            raise ValueError(f"dataset={str(path)!r} holds a JSON {type(data).__name__}, not a list of records; "
                             "give a list, or one record per line in a .jsonl file")
        return data
    return [_json(line, path, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def _json(text: str, path: Path, line: int | None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f" line {line}" if line is not None else ""
        raise ValueError(f"dataset={str(path)!r}{where} is not valid JSON ({exc.msg} at column {exc.colno})") \
            from None
