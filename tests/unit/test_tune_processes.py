"""The tune stage's own worker processes: the same search as in process, whichever process evaluates which
trial; the baseline's report the same wherever it is fitted; TUNE_WORKERS read as one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from tasks.columns import TARGET
from tasks.model import make_deterministic
from tasks.params import SearchSpace, TuneParams
from tasks.stage import InputError, file_md5
from tasks.tune import (
    TrialJob,
    baseline_report,
    best_hyperparameters,
    epochs_table,
    in_process_runner,
    search,
    trial_data,
    trials_table,
)
from tasks.tune_processes import Workers, local_workers, worker_processes
from tasks.tune_settings import FEATURES_DIR, TRIAL_SPLITS

# Batches of 3 on 2 processes: one process takes two trials of a batch, and which one does varies.
PARAMS = TuneParams(
    n_trials=9, parallel_trials=3, max_epochs=5, patience=3, threads=1, trial_rows=1500,
    search_space=SearchSpace(layers=[1, 2], units=[4, 16]),
)  # fmt: skip
SEED = 11


def _frame(rows: int, seed: int) -> pd.DataFrame:
    generator = np.random.default_rng(seed)
    features = generator.normal(size=(rows, 5))
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(5)])
    return frame.assign(**{TARGET: features[:, 0] - 0.5 * features[:, 2] + 0.1 * generator.normal(size=rows)})


@pytest.fixture(scope="module")
def two() -> Iterator[Workers]:
    """Two worker processes, shared by this module's tests (starting them is most of their time)."""
    with worker_processes(2) as workers:
        yield workers


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TrialJob:
    """Features files as preprocess writes them, in a scratch workspace (worker processes read them there)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / FEATURES_DIR).mkdir(parents=True)
    for split, rows in (("train", 2000), ("val", 400)):
        _frame(rows, seed=len(split)).to_parquet(FEATURES_DIR / f"{split}.parquet", index=False)
    features = {s: file_md5(FEATURES_DIR / f"{s}.parquet") for s in TRIAL_SPLITS}
    return TrialJob(f"study-{tmp_path.name}", SEED, PARAMS, features)  # the processes keep each study's data


def _in_this_process(job: TrialJob) -> optuna.Study:
    make_deterministic(SEED, PARAMS.threads)
    data = trial_data({split: FEATURES_DIR / f"{split}.parquet" for split in TRIAL_SPLITS}, PARAMS, SEED)
    return search(job, in_process_runner(*data))


def test_two_processes_search_exactly_as_one_does(two: Workers, workspace: TrialJob) -> None:
    reference = _in_this_process(workspace)
    storage = two.journal()
    study = search(workspace, two.trial_runner(storage), storage)
    ran_on = {trial.user_attrs["outcome"]["worker"] for trial in study.trials}
    # Every trial ran in one of the two pool processes, none in this one. (Their numbers count every process
    # this one spawned before, a Dask cluster's included: only the names' kind and count are the pool's.)
    assert 0 < len(ran_on) <= 2
    assert all(name.startswith("SpawnPoolWorker-") for name in ran_on), ran_on
    pd.testing.assert_frame_equal(trials_table(study), trials_table(reference))
    pd.testing.assert_frame_equal(epochs_table(study), epochs_table(reference))
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert best_hyperparameters(study, PARAMS.search_space) == best_hyperparameters(reference, PARAMS.search_space)


def test_a_worker_refuses_features_other_than_the_stage_read(two: Workers, workspace: TrialJob) -> None:
    _frame(2000, seed=99).to_parquet(FEATURES_DIR / "train.parquet", index=False)  # changed after the stage read it
    storage = two.journal()
    with pytest.raises(InputError, match=r"^data/features/train.parquet: md5 \w+, not the \w+ the tune stage read$"):
        search(workspace, two.trial_runner(storage), storage)


def test_the_baseline_reports_the_same_fitted_here_or_in_a_worker_process(two: Workers, workspace: TrialJob) -> None:
    train = _frame(3000, 1)
    _frame(500, 2).to_parquet(FEATURES_DIR / "val.parquet", index=False)
    evaluated = {"validation": (FEATURES_DIR / "val.parquet").absolute()}  # the processes started elsewhere
    args = (train.drop(columns=[TARGET]), train[TARGET].to_numpy(), evaluated, 20, 3)
    with worker_processes(1) as here:
        report, predicted = here.submit(baseline_report, *args)()
    there, predicted_there = two.submit(baseline_report, *args)()
    assert report == there
    assert set(report) == {"model", "validation"}
    assert predicted["validation"].tobytes() == predicted_there["validation"].tobytes()  # what the accuracy gate reads
    assert len(predicted["validation"]) == 500


def test_the_workers_are_one_per_core_unless_tune_workers_says_how_many() -> None:
    cores = len(os.sched_getaffinity(0))
    assert local_workers(64, {}) == cores
    assert local_workers(1, {}) == 1  # no more than could be busy
    assert local_workers(2, {"TUNE_WORKERS": "3"}) == 3  # as many as asked for, busy or not
    for bad in ("0", "two", "-1"):
        with pytest.raises(InputError, match=rf"^TUNE_WORKERS='{bad}': not a positive number of processes$"):
            local_workers(2, {"TUNE_WORKERS": bad})


def test_one_worker_is_this_process() -> None:
    with worker_processes(1) as workers:
        assert workers.count == 1
        assert workers.submit(torch.ones(2).sum().item().__add__, 1.0)() == 3.0
        with pytest.raises(RuntimeError, match="no worker processes"):
            workers.journal()
