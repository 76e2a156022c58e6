"""Samples drawn by a seeded hash of each row's key: the same rows however a table is ordered or cut.

tasks/sampling.py draws by position, from a table read whole; this draws from a table read batch by batch.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

# What a sample is drawn by: an invoice line. A product appearing twice on one invoice shares its
# key, and the earlier row wins a tie.
ROW_KEY = ["invoice_no", "stock_code"]


def key_hashes(keys: pd.DataFrame, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row's key (SipHash, pandas' row hash keyed by the seed)."""
    hash_key = hashlib.md5(f"sample {seed}".encode()).hexdigest()[:16]  # pandas wants 16 characters
    return pd.util.hash_pandas_object(keys, index=False, hash_key=hash_key).to_numpy()


class HashedSample:
    """The `size` rows with the smallest seeded hashes of their key, gathered batch by batch.

    Whether a row is in the sample depends on its key and the seed only, so the sample is the same
    however the table is cut into batches or partitions, and memory stays at `size` rows plus one
    batch. Rows sharing a key share a hash; the earlier position wins the last place. `rows()` gives
    the sample in the table's order, so a table no larger than `size` comes back whole, as it was.
    """

    def __init__(self, size: int, seed: int, key: list[str]) -> None:
        self.size, self.seed, self.key = size, seed, key
        self._parts: list[tuple[np.ndarray, np.ndarray, pd.DataFrame]] = []  # (hashes, positions, rows)
        self._kept = 0
        self._cutoff = np.iinfo(np.uint64).max  # the largest hash kept, once the sample is full

    def add(self, batch: pd.DataFrame, positions: np.ndarray, columns: list[str]) -> None:
        """Offer `batch` (its rows at `positions` in the whole table); keep `columns` of the chosen rows."""
        hashes = key_hashes(batch[self.key], self.seed)
        candidate = hashes <= self._cutoff
        self._parts.append((hashes[candidate], positions[candidate], batch.loc[candidate, columns]))
        self._kept += int(candidate.sum())
        if self._kept > self.size:
            self._shrink()

    def _shrink(self) -> None:
        hashes, positions, rows = self._joined()
        chosen = np.lexsort((positions, hashes))[: self.size]
        chosen = chosen[np.argsort(positions[chosen], kind="stable")]  # back in the table's order
        self._parts = [(hashes[chosen], positions[chosen], rows.iloc[chosen])]
        self._kept = len(chosen)
        if self._kept == self.size:
            self._cutoff = hashes[chosen].max()

    def _joined(self) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        hashes = np.concatenate([part[0] for part in self._parts])
        positions = np.concatenate([part[1] for part in self._parts])
        return hashes, positions, pd.concat([part[2] for part in self._parts])

    def rows(self) -> pd.DataFrame:
        """The sample, in the table's order, with a fresh index."""
        if not self._parts:
            raise ValueError("no batch was offered")
        if len(self._parts) > 1:
            self._shrink()
        return self._parts[0][2].reset_index(drop=True)
