"""A model version's scorer, built only from files whose bytes hash to the md5s its run recorded."""

from __future__ import annotations

from lineage.objects import ObjectError, Objects
from lineage.predictions import scoring_files
from lineage.store import LedgerStore
from tasks.score import FILES, Scorer
from tasks.stage import InputError


class NotServable(ValueError):
    """A version that cannot be loaded: a file missing from DVC's storage, altered, or unreadable; one line."""


def load_scorer(store: LedgerStore, objects: Objects, name: str) -> Scorer:
    """Version `name`'s scorer; every file is read from the DVC cache or remote and checked by md5 first."""
    files = scoring_files(store, name, FILES)
    try:
        data = objects.read_artifacts(files)
    except ObjectError as error:
        raise NotServable(f"{name}: {error}; refusing to load it") from None
    try:
        return Scorer.load(name, data, {role: artifact.md5 for role, artifact in files.items()})
    except InputError as error:
        raise NotServable(str(error)) from None
