"""The tuning coordinator's batches: the same search whatever order, or interleaving, a batch's trials are
evaluated in (as several workers would); pruning only against earlier batches; idempotent evaluations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
import torch

import tasks.tune as tune
from tasks.model import make_deterministic
from tasks.params import SearchSpace, TuneParams
from tasks.stage import InputError
from tasks.tune import (
    TrialJob,
    TrialRunner,
    best_hyperparameters,
    epochs_table,
    evaluate_trial,
    open_study,
    search,
    trials_table,
)
from tasks.tune_processes import Workers
from tasks.tune_settings import OPTUNA_STORAGE_URL_ENV, TUNE_TRIAL_DEPLOYMENT_ENV

# 14 trials in batches of 4: random start-up trials, then TPE; pruning from the third batch.
PARAMS = TuneParams(
    n_trials=14, parallel_trials=4, max_epochs=6, patience=3, threads=1,
    search_space=SearchSpace(layers=[1, 2], units=[4, 16]),
)  # fmt: skip
SEED = 5
Data = tuple[torch.Tensor, torch.Tensor]


def _split(rows: int, seed: int) -> Data:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, 6, generator=generator)
    return features, features[:, 0] - 0.5 * features[:, 2] + 0.1 * torch.randn(rows, generator=generator)


TRAIN, VAL = _split(400, 0), _split(100, 1)


def _search(runner: TrialRunner, params: TuneParams = PARAMS) -> optuna.Study:
    make_deterministic(SEED, params.threads)
    return search(TrialJob("batches", SEED, params, {}), runner)


def _ordered(order: Callable[[list[int]], list[int]]) -> TrialRunner:
    return tune.in_process_runner(TRAIN, VAL, order=order)


def _interleaved(events: list[str]) -> TrialRunner:
    """Two simulated workers: while one trains a trial, the other finishes the batch's next trial (after
    the first one's second epoch), in its own process, so with its own torch random state."""

    def run(study: optuna.Study, job: TrialJob, numbers: list[int]) -> None:
        evaluator = open_study(job.study_name, study._storage)
        waiting = list(numbers)
        original = tune.train

        def train(*args: Any, after_epoch: Callable[[int, float], None], **kwargs: Any) -> Any:
            def hook(epoch: int, loss: float) -> None:
                after_epoch(epoch, loss)
                if epoch == 2 and waiting:
                    other = waiting.pop()
                    events.append(f"trial {other} finished during another's epoch 2")
                    with torch.random.fork_rng():
                        evaluate_trial(evaluator, other, TRAIN, VAL, job, "worker-b")

            return original(*args, after_epoch=hook, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(tune, "train", train)
            while waiting:
                evaluate_trial(evaluator, waiting.pop(0), TRAIN, VAL, job, "worker-a")

    return run


@pytest.fixture(scope="module")
def in_order() -> optuna.Study:
    return _search(_ordered(list))


def test_the_reference_search_prunes_and_completes(in_order: optuna.Study) -> None:
    states = {trial.state for trial in in_order.trials}
    assert states == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert len(in_order.trials) == PARAMS.n_trials


@pytest.mark.parametrize("order", ["reversed", "interleaved"])
def test_any_order_of_evaluation_gives_the_same_search(in_order: optuna.Study, order: str) -> None:
    events: list[str] = []
    runner = _ordered(lambda numbers: numbers[::-1]) if order == "reversed" else _interleaved(events)
    other = _search(runner)
    if order == "interleaved":
        assert events, "no trial finished while another trained"
    pd.testing.assert_frame_equal(trials_table(other), trials_table(in_order))
    assert best_hyperparameters(other, PARAMS.search_space) == best_hyperparameters(in_order, PARAMS.search_space)


def test_the_epochs_table_holds_each_trials_loss_per_epoch(in_order: optuna.Study, tmp_path: Path) -> None:
    epochs = epochs_table(in_order)
    trials = {row["trial"]: row for row in trials_table(in_order).to_dict("records")}
    assert list(epochs.columns) == ["trial", "epoch", "val_loss"]
    assert list(epochs.itertuples(index=False)) == sorted(epochs.itertuples(index=False))  # trial, then epoch
    assert set(epochs["trial"]) == set(trials)
    for trial in in_order.trials:
        rows = epochs[epochs["trial"] == trial.number]
        reported = trial.intermediate_values  # one attempt per trial here: exactly what it reported
        assert list(rows["epoch"]) == list(range(1, len(reported) + 1))
        assert dict(zip(rows["epoch"], rows["val_loss"], strict=True)) == reported
        told = trials[trial.number]
        if trial.state == optuna.trial.TrialState.PRUNED:  # its rows stop at the epoch it was pruned after
            assert rows["epoch"].iloc[-1] == trial.last_step == told["epochs"] < PARAMS.max_epochs
            assert rows["val_loss"].iloc[-1] == told["val_loss"]
        else:
            assert rows["epoch"].iloc[-1] == told["epochs"]
            assert rows["val_loss"].min() == told["val_loss"]
    assert {t.state for t in in_order.trials} == {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}

    # Same inputs, same bytes: a second search writes the identical file.
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    epochs_table(in_order).to_csv(first, index=False)
    epochs_table(_search(_ordered(list))).to_csv(second, index=False)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_text().splitlines()[0] == "trial,epoch,val_loss"


def test_the_epochs_table_keeps_the_told_attempt_not_a_partial_earlier_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A partial first attempt stored steps the retry never reaches: the table has the retry's epochs only."""
    study, job = _asked(PARAMS)
    trial = optuna.Trial(study, study.trials[0]._trial_id)
    for epoch in (1, 2, 3, 4, 5, 6):  # stand-ins for a first attempt's values, beyond where the retry stops
        trial.report(100.0 + epoch, epoch)

    def two_epochs(*_args: Any, after_epoch: Callable[[int, float], None], **_kwargs: Any) -> Any:
        after_epoch(1, 0.5)
        after_epoch(2, 0.25)
        raise optuna.TrialPruned()

    monkeypatch.setattr(tune, "train", two_epochs)
    outcome = evaluate_trial(study, 0, TRAIN, VAL, job, "worker-a")
    assert (outcome.state, outcome.epochs, outcome.losses) == ("PRUNED", 2, [0.5, 0.25])
    rows = epochs_table(study).query("trial == 0")
    assert list(rows.itertuples(index=False, name=None)) == [(0, 1, 0.5), (0, 2, 0.25)]


def test_a_batch_of_one_is_the_sequential_search() -> None:
    """Told after every trial, the batch loop is Optuna's own ask-evaluate-tell loop."""
    params = PARAMS.model_copy(update={"n_trials": 8, "parallel_trials": 1})

    def objective(trial: optuna.Trial) -> float:
        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        hyper = tune.suggest(trial, params.search_space)
        result = tune.train(*TRAIN, *VAL, hyper, seed=SEED + trial.number, max_epochs=6, patience=3, after_epoch=report)
        trial.set_user_attr("outcome", {"epochs": result.epochs_run})
        return result.best_val_loss

    make_deterministic(SEED, 1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sequential = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=SEED), pruner=tune.make_pruner())
    sequential.optimize(objective, n_trials=params.n_trials)
    pd.testing.assert_frame_equal(trials_table(_search(_ordered(list), params)), trials_table(sequential))


def test_pruning_ignores_trials_of_the_same_batch() -> None:
    """Trials 8 and 9 are pruned when the eight before them were told first; in one batch with them,
    evaluated before them but not yet told, those eight cannot prune them: they train to the end."""
    told_first = _search(_ordered(list), PARAMS.model_copy(update={"n_trials": 10, "parallel_trials": 1}))
    one_batch = _search(_ordered(list), PARAMS.model_copy(update={"n_trials": 10, "parallel_trials": 10}))
    pruned = [t.number for t in told_first.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned == [8, 9]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in one_batch.trials)
    for number in pruned:  # the same trial (start-up trials are random either way), trained further
        assert one_batch.trials[number].params == told_first.trials[number].params
        assert one_batch.trials[number].last_step > told_first.trials[number].last_step  # type: ignore[operator]


def _asked(params: TuneParams) -> tuple[optuna.Study, TrialJob]:
    """A study whose first batch is asked and not evaluated, as a worker finds it."""
    asked: list[tuple[optuna.Study, TrialJob]] = []

    def stop(study: optuna.Study, job: TrialJob, _numbers: list[int]) -> None:
        asked.append((study, job))
        raise InterruptedError

    with pytest.raises(InterruptedError):
        _search(stop, params)
    study, job = asked[0]
    return open_study(job.study_name, study._storage), job


def test_a_retried_evaluation_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    clean, job = _asked(PARAMS)
    expected = evaluate_trial(clean, 0, TRAIN, VAL, job, "worker-a")

    # A first attempt died after two epochs, leaving their values stored and no outcome.
    retried, job = _asked(PARAMS)
    original = tune.train

    def dies_after_two_epochs(*args: Any, after_epoch: Callable[[int, float], None], **kwargs: Any) -> Any:
        def hook(epoch: int, loss: float) -> None:
            after_epoch(epoch, loss)
            if epoch == 2:
                raise ConnectionError("worker lost")

        return original(*args, after_epoch=hook, **kwargs)

    monkeypatch.setattr(tune, "train", dies_after_two_epochs)
    with pytest.raises(ConnectionError):
        evaluate_trial(retried, 0, TRAIN, VAL, job, "worker-a")
    assert sorted(retried.trials[0].intermediate_values) == [1, 2]
    monkeypatch.setattr(tune, "train", original)
    again = evaluate_trial(retried, 0, TRAIN, VAL, job, "worker-a")
    assert again == expected
    assert retried.trials[0].intermediate_values == clean.trials[0].intermediate_values

    # Once stored, an outcome is returned as it is, without training again (even on another worker).
    monkeypatch.setattr(tune, "train", lambda *_a, **_k: pytest.fail("trained again"))
    assert evaluate_trial(retried, 0, TRAIN, VAL, job, "worker-b") == expected


def test_an_evaluation_leaves_the_study_untold() -> None:
    study, job = _asked(PARAMS)
    evaluate_trial(study, 1, TRAIN, VAL, job, "worker-a")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.RUNNING] * PARAMS.parallel_trials
    assert study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)) == []


def test_an_unreachable_storage_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPTUNA_STORAGE_URL_ENV, "postgresql+psycopg://tuner:hunter2@127.0.0.1:1/optuna")
    with pytest.raises(RuntimeError) as error:
        tune._shared_storage()
    message = str(error.value)
    assert message.startswith("tune: cannot open the Optuna storage at postgresql+psycopg://tuner:***@127.0.0.1:1/")
    assert "hunter2" not in message


def test_workers_without_a_shared_storage_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TUNE_TRIAL_DEPLOYMENT_ENV, "tune-trial/workers")
    files = {split: Path(f"data/features/{split}.parquet") for split in ("train", "val")}  # never read: refused first
    with pytest.raises(InputError, match=r"^TUNE_TRIAL_DEPLOYMENT=tune-trial/workers needs OPTUNA_STORAGE_URL"):
        tune._runner(TrialJob("t", 0, PARAMS, {}), files, None, Workers(None, 1, None))
