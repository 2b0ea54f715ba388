"""Datasets shipped with lorakit (pure Python: importing this loads no torch)."""

from __future__ import annotations

from lorakit.data.builtin import FACTS, builtin_examples, builtin_split, normalize_answer

__all__ = ["FACTS", "builtin_examples", "builtin_split", "normalize_answer"]
