"""The `tune-trial` flow that Prefect workers run: one tuning trial per flow run.

The tune stage stays the coordinator: it asks each batch of trials, hands it to the runner in
flows/trial_runner.py, and tells the results after the barrier (tasks/tune.py, `search`). A worker only
evaluates: it opens the study in the shared Optuna storage, checks that its features are the bytes the
coordinator tuned on, trains and stores the outcome on the trial.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow

from flows.settings import read_secret
from lineage.objects import configure_s3_remote
from tasks import numeric_platform
from tasks.params import TuneParams
from tasks.stage import file_md5
from tasks.tune_settings import FEATURES_DIR, OPTUNA_STORAGE_URL_ENV


class FeaturesMismatch(Exception):
    """A worker's features are not the bytes the coordinator tuned on, and it cannot fetch them."""


def worker_name() -> str:
    """The Prefect worker running this flow run (its name, set in the flow run's environment), else this host."""
    return os.environ.get("PREFECT__WORKER_NAME") or f"{socket.gethostname()}:{os.getpid()}"


def storage_url(block: str | None) -> str:
    """The shared Optuna storage: from a Prefect Secret block if named, else this worker's OPTUNA_STORAGE_URL."""
    if block:
        return read_secret(block)
    url = os.environ.get(OPTUNA_STORAGE_URL_ENV)
    if not url:
        raise RuntimeError(
            f"tune-trial: no Optuna storage: set {OPTUNA_STORAGE_URL_ENV} for the worker or pass storage_block"
        )
    return url


def feature_files(features: dict[str, str], remote: str | None, root: Path = Path(".")) -> dict[str, Path]:
    """Each split's features file with the md5 the coordinator passed: the working directory's copy, or,
    if it differs and a DVC remote is named, the object with that md5 fetched into the DVC cache."""
    found: dict[str, Path] = {}
    for split, md5 in features.items():
        name = FEATURES_DIR / f"{split}.parquet"
        local = root / name
        actual = file_md5(local) if local.is_file() else None
        if actual == md5:
            found[split] = local
        elif remote is not None:
            found[split] = fetch_by_md5(md5, remote, root)
        else:
            raise FeaturesMismatch(
                f"{name}: md5 {actual or '(missing)'} differs from {md5}, the file the tune stage tuned on; "
                "run the worker in a checkout of the same version (dvc pull) or name a DVC remote to fetch it from"
            )
    return found


def fetch_by_md5(md5: str, remote: str, root: Path = Path(".")) -> Path:
    """The DVC cache's file with this md5, fetched from `remote` unless the cache already holds it."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        cached = Path(repo.cache.local.path) / md5[:2] / md5[2:]
        if cached.is_file() and file_md5(cached) == md5:
            return cached
        target = repo.cloud.get_remote(remote)
        source = target.fs.join(target.path, "files", "md5", md5[:2], md5[2:])
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cached.parent) as scratch:
            partial = Path(scratch) / "object"
            try:
                target.fs.get_file(source, str(partial))
            except FileNotFoundError:
                raise FeaturesMismatch(f"DVC remote '{remote}' holds no object with md5 {md5}") from None
            if file_md5(partial) != md5:
                raise FeaturesMismatch(f"DVC remote '{remote}': the object {md5} has other bytes; refusing it")
            shutil.move(partial, cached)
        return cached


@flow(name="tune-trial", log_prints=True, retries=1, retry_delay_seconds=5)
def tune_trial(
    study_name: str,
    trial_number: int,
    seed: int,
    tune_params: dict[str, Any],
    features: dict[str, str],
    storage_block: str | None = None,
    remote: str | None = None,
) -> dict[str, Any]:
    """Evaluate one tuning trial and store its outcome in the shared Optuna storage; the tune stage tells it."""
    numeric_platform.enter()  # before numpy and torch load here: trials compute as the tune stage does
    from tasks.model import make_deterministic
    from tasks.tune import TrialJob, evaluate_trial, open_storage, open_study, trial_data

    params = TuneParams.model_validate(tune_params)
    job = TrialJob(study_name=study_name, seed=seed, params=params, features=features)
    if remote is not None:  # in a worker image: the s3 remote's bucket and endpoint come from its environment
        configure_s3_remote()
    files = feature_files(features, remote)
    make_deterministic(seed, params.threads)
    train_data, val_data = trial_data(files, params, seed)
    storage = open_storage(storage_url(storage_block))
    try:
        study = open_study(study_name, storage)
        outcome = evaluate_trial(study, trial_number, train_data, val_data, job, worker_name())
    finally:
        storage.engine.dispose()
    print(f"trial {trial_number} of {study_name}: {outcome.state.lower()}, val loss {outcome.value:.5f}")
    return asdict(outcome)
