"""The unit the text backend batches: one token sequence run through the model, and what is read from it.

Shared by scoring (``hf.py``) and generation (``hf_generation.py``), which group rows by shared prefix
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ScoredRow:
    """One sequence actually run through the model, and what is read from its output.

    ``reads`` maps (position, target token) to an index in the flat result arrays: the log-prob of
    ``target`` predicted at ``position``. Several labels after one prompt read the same position with
    different targets; identical reads of different requests are computed once.
    """

    tokens: tuple[int, ...]
    reads: dict[tuple[int, int], int]
