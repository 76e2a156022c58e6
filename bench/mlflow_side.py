"""The MLflow side of bench/bench_vs_mlflow.py, run by the MLflow virtualenv's python (it imports no project
code, and the project's environment has no MLflow).

Each run records what our ledger records of a weekly run, the MLflow way, in a SQLite tracking store: 30
params, 20 metrics, 10 datasets (`mlflow.log_input`), the model file as an artifact registered as a new
version of the `demand` model, and the `production` alias moved to it.

    python bench/mlflow_side.py build --dir DIR --runs N    # a store of N runs (DIR/done.json when complete)
    python bench/mlflow_side.py measure --dir DIR --week W  # JSON: record, provenance, production (median of 7)
    python bench/mlflow_side.py provenance --dir DIR        # the production model's provenance, as JSON
    python bench/mlflow_side.py version
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network here
os.environ.setdefault("DO_NOT_TRACK", "true")
warnings.filterwarnings("ignore")
logging.getLogger("mlflow").setLevel(logging.ERROR)
logging.getLogger("alembic").setLevel(logging.ERROR)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.data.http_dataset_source import HTTPDatasetSource  # noqa: E402
from mlflow.data.meta_dataset import MetaDataset  # noqa: E402

MODEL = "demand"
ALIAS = "production"
EXPERIMENT = "retail-demand"
REPEAT = 7


def _connect(directory: Path) -> MlflowClient:
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient()


def _setup(directory: Path) -> MlflowClient:
    """A fresh store: the experiment (artifacts under DIR/artifacts) and the registered model."""
    directory.mkdir(parents=True, exist_ok=True)
    client = _connect(directory)
    if client.get_experiment_by_name(EXPERIMENT) is None:
        client.create_experiment(EXPERIMENT, artifact_location=(directory / "artifacts").as_uri())
    if not client.search_registered_models(filter_string=f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    return client


def _md5(*parts: object) -> str:
    return hashlib.md5(json.dumps(parts).encode()).hexdigest()


def record_run(client: MlflowClient, directory: Path, week: int) -> str:
    """One weekly run: params, metrics, datasets, the model registered and aliased `production`."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"week-{week}") as run:
        mlflow.log_params({f"stage.param_{k:02d}": f"{k * 7 + week % 5}" for k in range(30)})
        mlflow.log_metrics({f"stage.metric_{k:02d}": 0.5 + k / 100 + week / 1e6 for k in range(20)})
        for k in range(10):
            uri = f"s3://retail-lineage/data/input_{k}/week-{week}.parquet"
            dataset = MetaDataset(HTTPDatasetSource(uri), name=f"input_{k}", digest=_md5("raw", k, week)[:10])
            mlflow.log_input(dataset, context="training")
        model = directory / "model.pt"
        model.write_bytes(_md5("model", week).encode())
        mlflow.log_artifact(str(model), "model")
        version = client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias(MODEL, ALIAS, version.version)
    return run.info.run_id


def production(client: MlflowClient) -> Any:
    """Which version is in production."""
    return client.get_model_version_by_alias(MODEL, ALIAS)


def provenance(client: MlflowClient) -> dict[str, Any]:
    """The production model's provenance: alias -> version -> run -> params, metrics, tags, datasets."""
    version = client.get_model_version_by_alias(MODEL, ALIAS)
    run = client.get_run(version.run_id)
    return {
        "model_version": version.version,
        "source": version.source,
        "run_id": run.info.run_id,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
        "datasets": [
            {"name": d.dataset.name, "digest": d.dataset.digest, "source": d.dataset.source}
            for d in run.inputs.dataset_inputs
        ],
    }


def _median(action: Any, repeat: int = REPEAT) -> float:
    action()  # warm
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def build(directory: Path, runs: int) -> None:
    client = _setup(directory)
    began = time.perf_counter()
    for week in range(runs):
        record_run(client, directory, week)
        if (week + 1) % 500 == 0:
            elapsed = time.perf_counter() - began
            print(f"mlflow: {week + 1:,}/{runs:,} runs, {elapsed:.0f} s", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - began
    (directory / "done.json").write_text(json.dumps({"runs": runs, "seconds": seconds}), encoding="utf-8")


def measure(directory: Path, week: int) -> dict[str, Any]:
    client = _connect(directory)
    found = provenance(client)
    result: dict[str, Any] = {
        "provenance": _median(lambda: provenance(client)),
        "production": _median(lambda: production(client)),
        "provenance_counts": {key: len(found[key]) for key in ("params", "metrics", "tags", "datasets")},
    }
    weeks = iter(range(week, week + REPEAT + 1))
    result["record"] = _median(lambda: record_run(client, directory, next(weeks)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "measure", "provenance", "version"])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--week", type=int, default=0, help="measure: the first week recorded")
    arguments = parser.parse_args()
    if arguments.command == "version":
        print(mlflow.__version__)
    elif arguments.command == "build":
        build(arguments.dir, arguments.runs)
    elif arguments.command == "measure":
        print(json.dumps(measure(arguments.dir, arguments.week)))
    else:
        print(json.dumps(provenance(_connect(arguments.dir)), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
