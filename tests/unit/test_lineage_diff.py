"""`lineage diff` and the configuration history: between two runs with a param change, a dvc.yaml change
and a new commit, the diff names exactly those and the artifacts whose md5 changed; a deployment whose
schedule or job variables changed gets a ConfigurationChange with before and after values."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from lineage.diff import diff, table
from lineage.entities import Action, ActionStatus, ActionType
from lineage.query import QueryError
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.store import LedgerStore
from tests.conftest import GIT_ENV
from tests.lineage_workspace import REPO, STAGES, write_workspace

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)
DEPLOYMENT = "lineage-pipeline/weekly"
CONFIGURATION = {
    "id": "7b0e5a0e-0000-4000-8000-000000000001",
    "name": "weekly",
    "schedules": [{"schedule": {"cron": "0 6 * * 1", "timezone": "UTC"}, "active": True}],
    "work_pool": "retail-docker",
    "work_pool_type": "docker",
    "job_variables": {"image": "ecr/retail:abc", "env": {"AWS_SECRET_ACCESS_KEY": "***"}},
    "concurrency_limit": 1,
    "parameters": {"remote": "s3"},
}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, env=GIT_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _retune(root: Path, trials: int) -> None:
    """dvc.lock as a run with `tune.n_trials` = `trials` leaves it: tune and what it feeds have new md5s."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    changed: dict[str, str] = {}
    for stage in ("tune", "inference", "fairness"):
        entry = lock["stages"][stage]
        if stage == "tune":
            entry["params"]["params.yaml"]["tune.n_trials"] = trials
        for dep in entry["deps"]:
            dep["md5"] = changed.get(dep["path"], dep["md5"])
        for out in entry["outs"]:
            changed[out["path"]] = out["md5"] = hashlib.md5(f"{out['path']} {trials}".encode()).hexdigest()
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))


def _record(store: LedgerStore, root: Path, run_id: str, configuration: dict[str, Any] | None = None) -> None:
    stages = [StageRun(s, ActionStatus.COMPLETED, NOW, NOW, str(uuid.uuid4())) for s in STAGES]
    info = RunInfo(run_id, stages, NOW, NOW, None, "runs/x", DEPLOYMENT, deployment_configuration=configuration)
    record_run(store, info, root)


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[LedgerStore, Path]:
    """run-1, then run-2 after a commit that changes dvc.yaml and tune.n_trials (4 -> 6)."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    for name in ("dvc.yaml", "prefect.yaml"):
        shutil.copy(REPO / name, root / name)
    write_workspace(root, 1)
    _retune(root, 4)
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "week 1")
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    _record(store, root, "run-1", CONFIGURATION)
    write_workspace(root, 1)
    _retune(root, 6)
    (root / "dvc.yaml").write_text((root / "dvc.yaml").read_text() + "# tune: more trials\n")
    _git(root, "commit", "-qam", "tune: six trials")
    _record(store, root, "run-2", CONFIGURATION)
    return store, root


def test_diff_names_the_commit_the_param_the_dvc_yaml_change_and_the_changed_artifacts(
    two_runs: tuple[LedgerStore, Path],
) -> None:
    store, root = two_runs
    result = diff(store, "run-1", "run-2", root)
    assert result["commits"]["log"] == [_git(root, "log", "-1", "--format=%h %an: %s")]
    assert result["commits"]["log"][0].endswith(": tune: six trials")
    assert result["params"] == [{"key": "tune.n_trials", "before": 4, "after": 6}]
    assert [row["key"] for row in result["configuration"]] == ["file:dvc.yaml"]
    assert (
        result["configuration"][0]["before"]
        == hashlib.md5((root / "dvc.yaml").read_bytes()[: -len(b"# tune: more trials\n")]).hexdigest()
    )
    assert {stage: [row["path"] for row in rows] for stage, rows in result["artifacts"].items()} == {
        "tune": ["data/baseline_predictions.parquet", "metrics/tune.json", "models/model.pt", "reports/tune_epochs.csv",
                 "reports/tune_trials.csv"],
        "inference": [
            "data/predictions.parquet", "metrics/inference.json", "reports/shap_bar.png",
            "reports/shap_beeswarm.png", "reports/shap_importance.json", "reports/shap_values.parquet",
        ],
        "fairness": ["metrics/fairness.json"],
    }  # fmt: skip
    assert result["stage_dependencies"] == {}  # no code or raw data changed; upstream outputs are artifacts
    assert (result["image"], result["platform"], result["metrics"]) == ([], [], [])
    assert result["gates"] == [
        {"gate": "drift", "before": "passed", "after": "passed"},
        {"gate": "accuracy", "before": "passed", "after": "passed"},
        {"gate": "fairness", "before": "passed", "after": "passed"},
    ]
    text = table(result)
    assert "  tune.n_trials" in text
    assert "4 -> 6" in text
    assert "commits: " in text
    assert "(1 commit)" in text
    assert json.loads(json.dumps(result)) == result  # what --format json prints


def test_production_and_previous_name_the_two_latest_promoted_versions(two_runs: tuple[LedgerStore, Path]) -> None:
    store, root = two_runs
    named = diff(store, "previous", "production", root)
    assert (named["a"]["flow_run_id"], named["b"]["flow_run_id"]) == ("run-1", "run-2")
    back = diff(store, "production", "previous", root)["commits"]
    assert (back["log"], back["direction"]) == (named["commits"]["log"], "backward")  # the same commit, going back
    assert named["a"]["model_version"] != named["b"]["model_version"]
    assert diff(store, named["a"]["model_version"], named["b"]["model_version"], root)["params"] == named["params"]
    with pytest.raises(QueryError, match="'nope' is no flow run id, model version, 'production' or 'previous'"):
        diff(store, "nope", "production", root)


def test_a_deployment_change_is_recorded_with_before_and_after(tmp_path: Path) -> None:
    write_workspace(tmp_path, 1)
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    _record(store, tmp_path, "run-1", CONFIGURATION)
    _record(store, tmp_path, "run-2", CONFIGURATION)  # unchanged: nothing recorded
    changed = {
        **CONFIGURATION,
        "schedules": [{"schedule": {"cron": "0 7 * * 1", "timezone": "UTC"}, "active": True}],
        "job_variables": {"image": "ecr/retail:def", "env": {"AWS_SECRET_ACCESS_KEY": "***"}},
    }
    _record(store, tmp_path, "run-3", changed)
    found = [
        entity
        for record in store.records()
        if isinstance(entity := record.entity(), Action) and entity.action_type == ActionType.CONFIGURATION_CHANGE
    ]
    assert len(found) == 1
    [change] = found
    assert (change.parameters["previous_run"], change.parameters["first_seen_by"]) == ("run-2", "run-3")
    assert change.parameters["changes"] == [
        {"key": "deployment:job_variables.image", "before": "ecr/retail:abc", "after": "ecr/retail:def"},
        {
            "key": "deployment:schedules",
            "before": json.dumps(CONFIGURATION["schedules"], sort_keys=True),
            "after": json.dumps(changed["schedules"], sort_keys=True),
        },
    ]
    assert diff(store, "run-2", "run-3", tmp_path)["configuration"] == change.parameters["changes"]
