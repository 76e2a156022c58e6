"""Seeded row samples, for the stages that test, train or explain on part of their rows."""

import numpy as np


def seeded_rows(count: int, wanted: int, seed: int) -> np.ndarray:
    """Sorted row positions of a seeded sample of `wanted` of `count` rows (all rows when there are fewer)."""
    if wanted >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=wanted, replace=False))
