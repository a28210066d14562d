"""Which images an evaluation scores: split halves, evenly spaced subsets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from .choices import SPLITS

__all__ = ["SPLITS", "evenly_spaced", "split_names"]

T = TypeVar("T")


def split_names(names: Sequence[str], split: str = "all", *, seed: int = 0) -> list[str]:
    """The names of one split, sorted: ``all``, or one half of a seeded shuffle.

    The sorted names are shuffled with ``numpy.random.default_rng(seed).permutation``; the
    ``first-half`` is the first ``ceil(n / 2)`` of that order, the ``second-half`` the rest. The
    halves are disjoint, cover every name, and depend only on the set of names and the seed, so
    refinement options tuned on one half can be reported on the other. The shuffle mixes
    name-sorted groups (e.g. breeds) into both halves.

    Example::

        >>> a = split_names(["c", "a", "b", "d"], "first-half")
        >>> b = split_names(["c", "a", "b", "d"], "second-half")
        >>> sorted(a + b), set(a) & set(b)
        (['a', 'b', 'c', 'd'], set())
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    ordered = sorted(names)
    if split == "all":
        return ordered
    order = np.random.default_rng(seed).permutation(len(ordered))
    half = (len(ordered) + 1) // 2
    chosen = order[:half] if split == "first-half" else order[half:]
    return sorted(ordered[i] for i in chosen)


def evenly_spaced(items: Sequence[T], n: int | None) -> list[T]:
    """``n`` items spread evenly over ``items`` (first and last included); all when ``n`` is None, 0 or ≥ len.

    Deterministic, and spread over the whole list, so a subset of a name-sorted data set covers
    every group rather than the first one.

    Example::

        >>> evenly_spaced(list("abcdefghij"), 4)
        ['a', 'd', 'g', 'j']
    """
    if n is not None and n < 0:
        raise ValueError(f"a subset size must be >= 0 (0 = all), got {n}")
    if not n or n >= len(items):
        return list(items)
    index = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in index]
