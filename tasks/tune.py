"""Stage tune: Bayesian search (Optuna TPE) over the demand network, a final fit, and a baseline beside it."""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
import pandas as pd
import torch
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from common.redact import error_line, redact_url
from tasks.columns import TARGET
from tasks.model import Hyperparameters, make_deterministic, predict, save_model, train
from tasks.params import Params, SearchSpace, TuneParams, load_params
from tasks.row_groups import batches, row_count, take_rows
from tasks.sampling import seeded_rows
from tasks.stage import InputError, atomic_path, file_md5, run_stage, write_json
from tasks.tune_processes import Workers, local_workers, worker_processes
from tasks.tune_settings import (
    FEATURES_DIR,
    OPTUNA_STORAGE_URL_ENV,
    TRIAL_RUNNERS,
    TRIAL_SPLITS,
    TUNE_RUN_ID_ENV,
    TUNE_TRIAL_DEPLOYMENT_ENV,
)

if TYPE_CHECKING:
    from sklearn.ensemble import HistGradientBoostingRegressor

MODEL_OUT = Path("models/model.pt")
METRICS_OUT = Path("metrics/tune.json")
TRIALS_OUT = Path("reports/tune_trials.csv")  # one row per trial, a DVC plot
BASELINE_OUT = Path("data/baseline_predictions.parquet")  # the baseline's prediction of each test row, in units
EPOCHS_OUT = Path("reports/tune_epochs.csv")  # one row per trial per epoch trained: its validation loss
_OUTCOME = "outcome"  # the trial user attribute an evaluation stores its result in
BATCH_ROWS = 8 * 65_536  # whole chunks of model.predict's, so each prediction is computed as in one pass


def sampled(path: Path, rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A seeded sample of at most `rows` rows of a features file as preprocess writes it (every row: 0 or at
    least as many), in order and read a batch at a time: the features, and the log1p(quantity) target."""
    count = row_count(path)
    frame = take_rows(path, seeded_rows(count, rows or count, seed)).to_pandas()
    return frame.drop(columns=[TARGET]), frame[TARGET].to_numpy(dtype=np.float64)


def predicted_split(path: Path, predict_rows: Callable[[pd.DataFrame], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every row of a features file predicted a batch at a time: its targets and the predictions (log1p)."""
    targets, predictions = [], []
    for batch in batches(path, None, BATCH_ROWS):
        frame = batch.to_pandas()
        targets.append(frame[TARGET].to_numpy(dtype=np.float64))
        predictions.append(predict_rows(frame.drop(columns=[TARGET])))
    return np.concatenate(targets), np.concatenate(predictions)


def _tensors(features: pd.DataFrame, target: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(features.to_numpy(dtype=np.float32)), torch.from_numpy(target.astype(np.float32))


def suggest(trial: optuna.trial.BaseTrial, space: SearchSpace) -> Hyperparameters:
    """One point of the search space, named so that trials compare in the trials table."""
    layers = trial.suggest_int("layers", *space.layers)
    return Hyperparameters(
        units=[trial.suggest_int(f"units_{i}", *space.units, log=True) for i in range(layers)],
        dropout=[trial.suggest_float(f"dropout_{i}", *space.dropout) for i in range(layers)],
        batch_norm=trial.suggest_categorical("batch_norm", space.batch_norm),
        optimizer=trial.suggest_categorical("optimizer", space.optimizer),
        learning_rate=trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        batch_size=trial.suggest_categorical("batch_size", space.batch_size),
    )


@dataclass(frozen=True)
class TrialJob:
    """What evaluating any trial of one study needs besides the trial's number: plain values, so a
    runner can hand them to another process."""

    study_name: str
    seed: int
    params: TuneParams
    features: dict[str, str]  # split -> md5 of the data/features/<split>.parquet the coordinator read


@dataclass(frozen=True)
class TrialOutcome:
    """How one evaluation ended, as stored on its trial (user attribute "outcome") until the barrier."""

    number: int
    state: str  # "COMPLETE" or "PRUNED"
    value: float  # best validation loss, or the last one reported before pruning
    epochs: int
    worker: str  # where it ran: "in-process", or the Prefect worker's name
    # This attempt's validation loss after each epoch, epoch 1 first (as `train` numbers them). Not the
    # trial's intermediate values: those can hold steps of a partial earlier attempt.
    losses: list[float] = field(default_factory=list)


# Evaluates the given trials (asked, not yet told) of a study and stores each outcome on its trial.
# In-process by default; flows/tuning.py runs them as Prefect flow runs on workers.
TrialRunner = Callable[[optuna.Study, TrialJob, list[int]], None]


def make_pruner() -> optuna.pruners.BasePruner:
    """Median pruning on validation loss. Optuna's MedianPruner compares a trial only with COMPLETE
    trials; results are told at batch barriers, so a trial is pruned only against earlier batches."""
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)


def open_study(name: str, storage: str | optuna.storages.BaseStorage) -> optuna.Study:
    """An existing study, opened to evaluate its trials: it never samples, it only prunes."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(
        study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0), pruner=make_pruner()
    )


def evaluate_trial(
    study: optuna.Study,
    number: int,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    job: TrialJob,
    worker: str,
) -> TrialOutcome:
    """Train trial `number` with the hyperparameters the coordinator chose, prune it against the
    trials already told, and store the outcome on the trial without telling the study.

    Idempotent: an outcome already stored is returned as it is; a rerun after a partial attempt
    trains again from the same seed, so it reports the same values and takes the same decisions.
    """
    frozen = study.get_trials(deepcopy=False)[number]
    if _OUTCOME in frozen.user_attrs:
        return TrialOutcome(number=number, **frozen.user_attrs[_OUTCOME])
    if frozen.state != optuna.trial.TrialState.RUNNING:
        raise RuntimeError(f"tune: trial {number} of study {job.study_name} is {frozen.state.name}, not RUNNING")
    trial = optuna.Trial(study, frozen._trial_id)  # a handle on the stored trial: Optuna has no public lookup
    hyperparameters = suggest(optuna.trial.FixedTrial(frozen.params), job.params.search_space)
    reported: dict[int, float] = {}

    def report(epoch: int, val_loss: float) -> None:
        if epoch not in frozen.intermediate_values:  # else an earlier attempt stored this same value
            trial.report(val_loss, epoch)
        reported[epoch] = val_loss
        # Decided on this attempt's values, never on steps a partial earlier attempt stored beyond them.
        so_far = copy.copy(frozen)
        so_far.intermediate_values = dict(reported)
        if study.pruner.prune(study, so_far):
            raise optuna.TrialPruned()

    try:
        result = train(
            *train_data, *val_data, hyperparameters, seed=job.seed + number,
            max_epochs=job.params.max_epochs, patience=job.params.patience, after_epoch=report,
        )  # fmt: skip
        outcome = TrialOutcome(number, "COMPLETE", result.best_val_loss, result.epochs_run, worker, _in_order(reported))
    except optuna.TrialPruned:
        last = max(reported)
        outcome = TrialOutcome(number, "PRUNED", reported[last], last, worker, _in_order(reported))
    stored = asdict(outcome)
    del stored["number"]
    trial.set_user_attr(_OUTCOME, stored)
    return outcome


def _in_order(reported: dict[int, float]) -> list[float]:
    """Reported losses in epoch order; `train` reports every epoch from 1 on, so the list index is epoch - 1."""
    return [reported[epoch] for epoch in sorted(reported)]


def trial_data(
    files: dict[str, Path], params: TuneParams, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """What every trial trains and validates on: seeded samples of the training (`trial_rows`) and the
    validation rows (`val_rows`), read from the features files."""
    return _tensors(*sampled(files["train"], params.trial_rows, seed)), _tensors(
        *sampled(files["val"], params.val_rows, seed)
    )


def in_process_runner(
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    order: Callable[[list[int]], list[int]] = list,
) -> TrialRunner:
    """Evaluate a batch's trials here, one after another (in trial-number order unless `order` says otherwise)."""

    def run(study: optuna.Study, job: TrialJob, numbers: list[int]) -> None:
        evaluator = open_study(job.study_name, study._storage)
        for number in order(numbers):
            evaluate_trial(evaluator, number, train_data, val_data, job, worker="in-process")

    return run


def search(job: TrialJob, runner: TrialRunner, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """`n_trials` trials of seeded TPE with median pruning, decided in batches of `parallel_trials`.

    This coordinator asks a whole batch, has `runner` evaluate it (anywhere, in any order, at once),
    and after that barrier tells the outcomes in trial-number order. TPE and the pruner therefore see
    the same trials whatever the order of evaluation or the number of workers, and choose the same.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params = job.params
    study = optuna.create_study(
        study_name=job.study_name,
        storage=storage,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=job.seed),
        pruner=make_pruner(),
    )
    log = _log_progress(params.n_trials)
    for first in range(0, params.n_trials, params.parallel_trials):
        numbers = []
        for _ in range(min(params.parallel_trials, params.n_trials - first)):
            trial = study.ask()
            suggest(trial, params.search_space)  # stores the choices: evaluations read them from the trial
            numbers.append(trial.number)
        runner(study, job, numbers)
        trials = study.get_trials(deepcopy=False)
        for number in numbers:  # the barrier passed: tell every outcome, in trial-number order
            stored = trials[number].user_attrs.get(_OUTCOME)
            if stored is None:
                raise RuntimeError(f"tune: trial {number} of study {job.study_name} has no outcome after its batch")
            if stored["state"] == "PRUNED":  # Optuna takes the last reported value as a pruned trial's value
                study.tell(number, state=optuna.trial.TrialState.PRUNED)
            else:
                study.tell(number, stored["value"])
            log(study, study.get_trials(deepcopy=False)[number], stored["worker"])
    return study


def _trial_value(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's validation loss: its result, or the last value it reported before being pruned."""
    if trial.value is not None:
        return trial.value
    return trial.intermediate_values.get(trial.last_step, float("nan")) if trial.last_step else float("nan")


def _log_progress(n_trials: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial, str], None]:
    """One line per trial told: which, how it ended, its value, the best so far, and where it ran."""

    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial, worker: str) -> None:
        completed = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = f"{min(v for v in completed if v is not None):.5f}" if completed else "none yet"
        where = "" if worker == "in-process" else f" (on {worker})"
        print(
            f"tune: trial {trial.number + 1} of {n_trials} {trial.state.name.lower()}: "
            f"val loss {_trial_value(trial):.5f}, best {best}{where}",
            flush=True,
        )

    return log


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """Every trial: number, outcome, validation loss, epochs trained, hyperparameters."""
    return pd.DataFrame(
        [
            {
                "trial": trial.number,
                "state": trial.state.name,
                "val_loss": _trial_value(trial),
                "epochs": trial.user_attrs.get(_OUTCOME, {}).get("epochs", trial.last_step),
                **trial.params,
            }
            for trial in study.trials
        ]
    )


def epochs_table(study: optuna.Study) -> pd.DataFrame:
    """Every trial's validation loss after each epoch it trained (long format: trial, epoch, val_loss),
    in trial then epoch order; a pruned trial's rows end at the epoch it was pruned after."""
    return pd.DataFrame(
        [
            {"trial": trial.number, "epoch": epoch, "val_loss": loss}
            for trial in study.trials
            for epoch, loss in _epoch_losses(trial)
        ],
        columns=["trial", "epoch", "val_loss"],
    )


def _epoch_losses(trial: optuna.trial.FrozenTrial) -> list[tuple[int, float]]:
    """(epoch, validation loss) of the evaluation whose outcome was told; a trial evaluated outside `search`
    (no stored losses) falls back to its intermediate values."""
    stored = trial.user_attrs.get(_OUTCOME, {})
    if "losses" in stored:
        return list(enumerate(stored["losses"], start=1))
    return sorted(trial.intermediate_values.items())


def best_hyperparameters(study: optuna.Study, space: SearchSpace) -> Hyperparameters:
    """Rebuild the best trial's Hyperparameters from its recorded choices."""
    best = study.best_trial
    return suggest(optuna.trial.FixedTrial(best.params), space)


def baseline(train_x: pd.DataFrame, train_y: np.ndarray, max_iter: int, seed: int) -> HistGradientBoostingRegressor:
    """HistGradientBoosting on the same features and target, fixed rounds (no random early-stopping split)."""
    # Imported here, as scikit-learn is in main(): trial workers import this module and need neither.
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(max_iter=max_iter, early_stopping=False, random_state=seed).fit(
        train_x, train_y
    )


def baseline_report(
    train_x: pd.DataFrame, train_y: np.ndarray, evaluated: dict[str, Path], max_iter: int, seed: int
) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    """The baseline, fitted: its metrics on every row of each evaluated features file (what metrics/tune.json
    says of it) and its predictions there, in units sold."""
    from tasks.metrics import regression_metrics, to_quantity

    reference = baseline(train_x, train_y, max_iter, seed)
    scores, predicted = {}, {}
    for name, path in evaluated.items():
        y, predicted_log = predicted_split(path, reference.predict)
        predicted[name] = to_quantity(predicted_log)
        scores[name] = regression_metrics(to_quantity(y), predicted[name])
    return {"model": "HistGradientBoostingRegressor", **scores}, predicted


def _shared_storage() -> optuna.storages.RDBStorage | None:
    """The shared Optuna storage OPTUNA_STORAGE_URL names, or None: a study in memory."""
    url = os.environ.get(OPTUNA_STORAGE_URL_ENV)
    return open_storage(url) if url else None


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at a SQLAlchemy URL; an error names it with its credentials masked."""
    if _parse(url) is None:  # SQLAlchemy's own message would echo the URL, password and all
        raise InputError(f"{OPTUNA_STORAGE_URL_ENV}: not a SQLAlchemy database URL")
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except Exception as error:  # a server down or unreachable: a retry may succeed
        reason = error_line(error, url)
        raise RuntimeError(f"tune: cannot open the Optuna storage at {redact_url(url)}: {reason}") from None


def _parse(url: str) -> URL | None:
    try:
        return make_url(url)
    except ArgumentError:
        return None


def _runner(
    job: TrialJob,
    files: dict[str, Path],
    storage: optuna.storages.RDBStorage | None,
    workers: Workers,
) -> tuple[TrialRunner, optuna.storages.BaseStorage | None]:
    """The trial runner and the study's storage: the stage's worker processes when it has several and a batch
    has several trials (sharing the study through `storage`, else a journal file), else this process; unless
    TUNE_TRIAL_DEPLOYMENT names a Prefect deployment whose workers run the trials."""
    deployment = os.environ.get(TUNE_TRIAL_DEPLOYMENT_ENV)
    where = redact_url(str(storage.url)) if storage else "memory"
    if storage is not None and job.study_name in optuna.study.get_all_study_names(storage):
        # Left by an earlier attempt of this same run: start afresh, so TPE sees exactly what it asked.
        optuna.delete_study(study_name=job.study_name, storage=storage)
        print(f"tune: deleted study {job.study_name}, left by an earlier attempt of this run", flush=True)
    if not deployment:
        if workers.count > 1 and job.params.parallel_trials > 1:
            shared = storage or workers.journal()
            where = where if storage else "a journal file"
            print(f"tune: study {job.study_name} in {where}; trials run in {workers.count} processes", flush=True)
            return workers.trial_runner(shared), shared
        print(f"tune: study {job.study_name} in {where}; trials run in this process", flush=True)
        return in_process_runner(*trial_data(files, job.params, job.seed)), storage
    if storage is None:
        raise InputError(
            f"{TUNE_TRIAL_DEPLOYMENT_ENV}={deployment} needs {OPTUNA_STORAGE_URL_ENV}: workers share trials through it"
        )
    print(f"tune: study {job.study_name} in {where}; trials run by deployment {deployment}", flush=True)
    if job.params.parallel_trials == 1:
        print("tune: tune.parallel_trials is 1, so the workers take one trial at a time; raise it to run several")
    return _installed_runner(deployment), storage


def _installed_runner(deployment: str) -> TrialRunner:
    """The trial runner registered as entry point `prefect` of TRIAL_RUNNERS (flows/trial_runner.py here),
    loaded only when asked for: the stage itself never imports an orchestrator."""
    found = entry_points(group=TRIAL_RUNNERS, name="prefect")
    if not found:
        raise InputError(
            f"{TUNE_TRIAL_DEPLOYMENT_ENV}={deployment}: no trial runner 'prefect' in entry points {TRIAL_RUNNERS} "
            "(install the project: pip install -e .)"
        )
    factory: Callable[[str], TrialRunner] = next(iter(found)).load()
    return factory(deployment)


def main() -> None:
    params: Params = load_params()
    make_deterministic(params.seed, params.tune.threads)
    # A process per trial of a batch, and at least one for the baseline beside the final fit, as far as the cores go.
    with worker_processes(local_workers(max(params.tune.parallel_trials, 2))) as workers:
        _main(params, workers)


def _main(params: Params, workers: Workers) -> None:
    from tasks.metrics import regression_metrics, to_quantity

    files = {split: FEATURES_DIR / f"{split}.parquet" for split in ("train", "val", "test")}
    train_rows, val_rows = row_count(files["train"]), row_count(files["val"])
    if train_rows < 2 or val_rows < 1:
        raise InputError(f"{FEATURES_DIR}: too few rows to train ({train_rows} train, {val_rows} validation)")

    job = TrialJob(
        study_name=f"tune-{os.environ.get(TUNE_RUN_ID_ENV) or 'local-' + uuid.uuid4().hex[:12]}",
        seed=params.seed,
        params=params.tune,
        features={split: file_md5(files[split]) for split in TRIAL_SPLITS},
    )
    runner, storage = _runner(job, files, _shared_storage(), workers)
    study = search(job, runner, storage)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise InputError(f"tune: all {len(study.trials)} trials were pruned or failed; widen tune.search_space")
    chosen = best_hyperparameters(study, params.tune.search_space)
    train_x, train_y = sampled(files["train"], params.tune.fit_rows, params.seed)
    # The baseline needs no trial: it fits. Absolute paths: a worker process may have started elsewhere.
    evaluated = {"validation": files["val"].absolute(), "test": files["test"].absolute()}
    reference = workers.submit(  # in a worker process while this one trains the final model
        baseline_report, train_x, train_y, evaluated, params.tune.baseline_max_iter, params.seed
    )
    final = train(
        *_tensors(train_x, train_y), *_tensors(*sampled(files["val"], params.tune.val_rows, params.seed)), chosen,
        seed=params.seed, max_epochs=params.tune.max_epochs, patience=params.tune.patience,
    )  # fmt: skip
    val_y, val_pred = predicted_split(
        files["val"], lambda x: predict(final.model, torch.from_numpy(x.to_numpy(dtype=np.float32))).numpy()
    )

    save_model(MODEL_OUT, final.model, chosen, list(train_x.columns))
    with atomic_path(TRIALS_OUT) as tmp:
        trials_table(study).to_csv(tmp, index=False)
    with atomic_path(EPOCHS_OUT) as tmp:
        epochs_table(study).to_csv(tmp, index=False)
    baseline_metrics, baseline_predicted = reference()
    with atomic_path(BASELINE_OUT) as tmp:  # the accuracy gate compares the network with it row by row
        pd.DataFrame({"y_pred": baseline_predicted["test"]}).to_parquet(tmp, index=False)
    states = [t.state for t in study.trials]
    network_val = regression_metrics(to_quantity(val_y), to_quantity(val_pred))
    write_json(
        METRICS_OUT,
        {
            "validation": network_val,
            "validation_loss": final.best_val_loss,
            "best_hyperparameters": asdict(chosen),
            "trials": {
                "total": len(states),
                "completed": states.count(optuna.trial.TrialState.COMPLETE),
                "pruned": states.count(optuna.trial.TrialState.PRUNED),
            },
            "final_training": {"epochs_run": final.epochs_run, "best_epoch": final.best_epoch},
            "baseline": baseline_metrics,
        },
    )
    print(f"tune: best {chosen}; validation RMSLE {network_val['rmsle']:.4f}; model {MODEL_OUT}")


if __name__ == "__main__":
    run_stage("tune", main)
