"""The tune stage's own worker processes, one per core (TUNE_WORKERS says otherwise): the trials of a batch
evaluated at once, and the baseline fitted beside the final fit.

They change no result. `tasks.tune.search` decides every trial in the stage and tells a batch's outcomes in
trial-number order once the whole batch has them, whichever process evaluated which trial and whichever
finished first; the processes evaluate as a `tune-trial` flow run does, through a study storage they share.
Each is spawned (a fresh interpreter, no forked state), so it starts on the numeric platform the stage
restarted itself on, from that environment, and checks MKL's branch before it trains.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.pool import Pool
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
from optuna.storages.journal import JournalFileBackend

from tasks.stage import InputError, file_md5
from tasks.tune_settings import FEATURES_DIR, TRIAL_SPLITS, TUNE_WORKERS_ENV

if TYPE_CHECKING:
    import torch

    from tasks.tune import TrialJob, TrialRunner

T = TypeVar("T")


def local_workers(useful: int, environ: dict[str, str] | None = None) -> int:
    """How many worker processes the stage starts here: TUNE_WORKERS if set, else one per core it may run on, at
    most `useful` (more would wait idle)."""
    value = (os.environ if environ is None else environ).get(TUNE_WORKERS_ENV, "")
    if not value:
        return min(len(os.sched_getaffinity(0)), useful)
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"{TUNE_WORKERS_ENV}={value!r}: not a positive number of processes")
    return int(value)


class Workers:
    """The stage's worker processes, or none (`count` 1): then everything runs here, one thing after another."""

    def __init__(self, pool: Pool | None, count: int, scratch: Path | None) -> None:
        self._pool, self.count, self._scratch = pool, count, scratch

    def submit(self, function: Callable[..., T], *args: Any) -> Callable[[], T]:
        """Start `function(*args)` in a worker process (at once here, without one); returns what waits for
        its result (and raises its error)."""
        if self._pool is None:
            result = function(*args)
            return lambda: result
        return self._pool.apply_async(function, args).get

    def journal(self) -> optuna.storages.BaseStorage:
        """A study storage the worker processes share with this one: a journal file in a scratch folder."""
        return optuna.storages.JournalStorage(JournalFileBackend(str(self._journal_path())))

    def trial_runner(self, storage: optuna.storages.BaseStorage) -> TrialRunner:
        """Evaluate each batch's trials on the worker processes at once; they open the study in `storage`
        (this stage's journal, or the shared database OPTUNA_STORAGE_URL names)."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("tune: no worker processes to run trials on")
        where = storage.url if isinstance(storage, optuna.storages.RDBStorage) else str(self._journal_path())
        features = Path.cwd() / FEATURES_DIR  # the stage's, wherever the processes were started

        def run(_study: optuna.Study, job: TrialJob, numbers: list[int]) -> None:
            pending = [pool.apply_async(_evaluate, (job, number, where, features)) for number in numbers]
            for result in pending:
                result.get()  # the first failure raises

        return run

    def _journal_path(self) -> Path:
        if self._scratch is None:
            raise RuntimeError("tune: no worker processes to share a journal with")
        return self._scratch / "study.journal"


@contextmanager
def worker_processes(count: int) -> Iterator[Workers]:
    """`count` spawned worker processes for the block (none if it is 1), stopped when it ends, however."""
    if count < 2:
        yield Workers(None, 1, None)
        return
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="tune-") as scratch, spawn.Pool(count) as pool:
        yield Workers(pool, count, Path(scratch))  # leaving the block terminates the processes, even mid-trial


# What a worker process keeps between the trials it evaluates: its trial data and the study storage, by study.
_opened: dict[str, tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], Any]] = {}


def _evaluate(job: TrialJob, number: int, storage: str, features: Path) -> None:
    """In a worker process: evaluate trial `number` and store its outcome on the trial, as a `tune-trial` flow
    run does. Its first trial checks the platform and reads the features the stage read (by md5)."""
    from tasks.model import make_deterministic
    from tasks.tune import evaluate_trial, open_storage, open_study, trial_data

    if job.study_name not in _opened:
        make_deterministic(job.seed, job.params.threads)
        files = {split: features / f"{split}.parquet" for split in TRIAL_SPLITS}
        for split, path in files.items():
            if (found := file_md5(path)) != job.features[split]:
                shown = FEATURES_DIR / path.name
                raise InputError(f"{shown}: md5 {found}, not the {job.features[split]} the tune stage read")
        data = trial_data(files, job.params, job.seed)
        if "://" in storage:  # the shared database's URL
            opened: Any = open_storage(storage)
        else:
            opened = optuna.storages.JournalStorage(JournalFileBackend(storage))
        _opened[job.study_name] = (*data, opened)
    train_data, val_data, opened = _opened[job.study_name]
    name = multiprocessing.current_process().name
    evaluate_trial(open_study(job.study_name, opened), number, train_data, val_data, job, worker=name)
