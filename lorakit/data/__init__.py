"""Datasets shipped with lorakit (pure Python: importing this loads no torch)."""

from __future__ import annotations

from lorakit.data.builtin import FACTS, builtin_examples, builtin_split, normalize_answer
from lorakit.data.tasks import TASKS, Task, builtin_task, json_examples, parse_json_line, score_answers

__all__ = [
    "FACTS",
    "TASKS",
    "Task",
    "builtin_examples",
    "builtin_split",
    "builtin_task",
    "json_examples",
    "normalize_answer",
    "parse_json_line",
    "score_answers",
]
