"""The tune stage's settings that come from its environment: set by the lineage-pipeline flow (or by hand),
read by the stage and by its trial runners. Apart from tasks/tune.py so that the flow need not import torch.
"""

from pathlib import Path

TUNE_RUN_ID_ENV = "TUNE_RUN_ID"  # the flow run id the Optuna study is named after
TUNE_TRIAL_DEPLOYMENT_ENV = "TUNE_TRIAL_DEPLOYMENT"  # e.g. tune-trial/workers: trials run as its flow runs
OPTUNA_STORAGE_URL_ENV = "OPTUNA_STORAGE_URL"  # a shared Optuna storage (PostgreSQL); unset: in memory, in process
OPTUNA_STORAGE_BLOCK_ENV = "OPTUNA_STORAGE_BLOCK"  # a Secret block holding that URL, handed on to workers
TUNE_FEATURES_REMOTE_ENV = "TUNE_FEATURES_REMOTE"  # a DVC remote trial workers fetch the features from, by md5

# Entry-point group of trial runners: how the stage reaches workers without importing an orchestrator.
# This project's pyproject.toml registers `prefect` (flows/trial_runner.py).
TRIAL_RUNNERS = "retail_lineage.trial_runners"

FEATURES_DIR = Path("data/features")
TRIAL_SPLITS = ("train", "val")  # the features every trial reads: what workers elsewhere must have
# How many processes the tune stage runs its trials (and its baseline) in, on this machine; unset: one per core.
# Results never depend on it (tasks/tune_processes.py), so it is a setting of the machine, not a param.
TUNE_WORKERS_ENV = "TUNE_WORKERS"
