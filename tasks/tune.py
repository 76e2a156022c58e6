"""Stage tune: Bayesian search (Optuna TPE) over the demand network, a final fit, and a baseline beside it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from tasks.data import TARGET
from tasks.metrics import regression_metrics, to_quantity
from tasks.model import Hyperparameters, make_deterministic, predict, save_model, train
from tasks.params import Params, SearchSpace, TuneParams, load_params
from tasks.stage import InputError, atomic_path, run_stage, write_json

FEATURES_DIR = Path("data/features")
MODEL_OUT = Path("models/model.pt")
METRICS_OUT = Path("metrics/tune.json")
TRIALS_OUT = Path("reports/tune_trials.csv")  # one row per trial, a DVC plot


def read_split(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Transformed features and the log1p(quantity) target of one split."""
    frame = pd.read_parquet(FEATURES_DIR / f"{name}.parquet")
    return frame.drop(columns=[TARGET]), frame[TARGET].to_numpy(dtype=np.float64)


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


def search(
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    params: TuneParams,
    seed: int,
) -> optuna.Study:
    """`params.n_trials` trials of TPE (seeded) with median pruning on validation loss."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )

    def objective(trial: optuna.Trial) -> float:
        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = train(
            *train_data, *val_data, suggest(trial, params.search_space),
            seed=seed + trial.number, max_epochs=params.max_epochs, patience=params.patience, after_epoch=report,
        )  # fmt: skip
        trial.set_user_attr("epochs", result.epochs_run)
        return result.best_val_loss

    study.optimize(objective, n_trials=params.n_trials, callbacks=[_log_progress(params.n_trials)])
    return study


def _trial_value(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's validation loss: its result, or the last value it reported before being pruned."""
    if trial.value is not None:
        return trial.value
    return trial.intermediate_values.get(trial.last_step, float("nan")) if trial.last_step else float("nan")


def _log_progress(n_trials: int) -> Callable[[optuna.Study, optuna.trial.FrozenTrial], None]:
    """One line per finished trial: which, how it ended, its value and the best so far."""

    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        completed = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = f"{min(v for v in completed if v is not None):.5f}" if completed else "none yet"
        print(
            f"tune: trial {trial.number + 1} of {n_trials} {trial.state.name.lower()}: "
            f"val loss {_trial_value(trial):.5f}, best {best}",
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
                "epochs": trial.user_attrs.get("epochs", trial.last_step),
                **trial.params,
            }
            for trial in study.trials
        ]
    )


def best_hyperparameters(study: optuna.Study, space: SearchSpace) -> Hyperparameters:
    """Rebuild the best trial's Hyperparameters from its recorded choices."""
    best = study.best_trial
    return suggest(optuna.trial.FixedTrial(best.params), space)


def baseline(train_x: pd.DataFrame, train_y: np.ndarray, max_iter: int, seed: int) -> HistGradientBoostingRegressor:
    """HistGradientBoosting on the same features and target, fixed rounds (no random early-stopping split)."""
    return HistGradientBoostingRegressor(max_iter=max_iter, early_stopping=False, random_state=seed).fit(
        train_x, train_y
    )


def _sample(features: pd.DataFrame, target: np.ndarray, rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A seeded sample of training rows for the trials (all rows when `rows` is 0 or more than there are)."""
    if rows == 0 or rows >= len(features):
        return features, target
    chosen = np.sort(np.random.default_rng(seed).choice(len(features), size=rows, replace=False))
    return features.iloc[chosen], target[chosen]


def main() -> None:
    params: Params = load_params()
    make_deterministic(params.seed, params.tune.threads)
    train_x, train_y = read_split("train")
    val_x, val_y = read_split("val")
    test_x, test_y = read_split("test")
    if len(train_x) < 2 or len(val_x) < 1:
        raise InputError(f"{FEATURES_DIR}: too few rows to train ({len(train_x)} train, {len(val_x)} validation)")

    study = search(
        _tensors(*_sample(train_x, train_y, params.tune.trial_rows, params.seed)),
        _tensors(val_x, val_y),
        params.tune,
        params.seed,
    )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise InputError(f"tune: all {len(study.trials)} trials were pruned or failed; widen tune.search_space")
    chosen = best_hyperparameters(study, params.tune.search_space)
    final = train(
        *_tensors(train_x, train_y), *_tensors(val_x, val_y), chosen,
        seed=params.seed, max_epochs=params.tune.max_epochs, patience=params.tune.patience,
    )  # fmt: skip
    val_pred = predict(final.model, _tensors(val_x, val_y)[0]).numpy()
    reference = baseline(train_x, train_y, params.tune.baseline_max_iter, params.seed)

    save_model(MODEL_OUT, final.model, chosen, list(train_x.columns))
    with atomic_path(TRIALS_OUT) as tmp:
        trials_table(study).to_csv(tmp, index=False)
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
            "baseline": {
                "model": "HistGradientBoostingRegressor",
                "validation": regression_metrics(to_quantity(val_y), to_quantity(reference.predict(val_x))),
                "test": regression_metrics(to_quantity(test_y), to_quantity(reference.predict(test_x))),
            },
        },
    )
    print(f"tune: best {chosen}; validation RMSLE {network_val['rmsle']:.4f}; model {MODEL_OUT}")


if __name__ == "__main__":
    run_stage("tune", main)
