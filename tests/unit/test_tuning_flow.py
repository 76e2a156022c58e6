"""The Prefect side of distributed tuning, without a server: what the runner submits for each trial, how a
worker finds its features (by md5, in its checkout or from a DVC remote), and the shared names."""

from __future__ import annotations

import inspect
import shutil
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import flows.trial_runner as trial_runner
import flows.tuning as tuning
import tasks.tune as tune
from tasks.params import TuneParams
from tasks.stage import file_md5
from tasks.tune_settings import (
    OPTUNA_STORAGE_BLOCK_ENV,
    OPTUNA_STORAGE_URL_ENV,
    TRIAL_RUNNERS,
    TRIAL_SPLITS,
    TUNE_FEATURES_REMOTE_ENV,
)


def test_the_stage_finds_the_prefect_runner_by_its_entry_point() -> None:
    from importlib.metadata import entry_points

    (found,) = entry_points(group=TRIAL_RUNNERS, name="prefect")
    assert found.load() is trial_runner.prefect_runner
    assert set(TRIAL_SPLITS) == {"train", "val"}  # what trials read, shared with workers by the flow


def test_the_runner_submits_one_flow_run_per_trial_without_the_storage_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(OPTUNA_STORAGE_URL_ENV, "postgresql+psycopg://tuner:hunter2@127.0.0.1/optuna")
    monkeypatch.setenv(OPTUNA_STORAGE_BLOCK_ENV, "optuna-storage")
    monkeypatch.delenv(TUNE_FEATURES_REMOTE_ENV, raising=False)
    submitted: list[dict[str, Any]] = []
    waited: list[dict[uuid.UUID, int]] = []

    def run_deployment(name: str, **options: Any) -> Any:
        submitted.append({"name": name, **options})
        return SimpleNamespace(id=uuid.uuid4())

    monkeypatch.setattr(trial_runner, "run_deployment", run_deployment)
    monkeypatch.setattr(trial_runner, "_wait", lambda runs, *_: waited.append(runs))
    job = tune.TrialJob("tune-abc", 42, TuneParams(), {"train": "a" * 32, "val": "b" * 32})
    trial_runner.prefect_runner("tune-trial/workers")(None, job, [4, 5])  # type: ignore[arg-type]

    assert [s["parameters"]["trial_number"] for s in submitted] == [4, 5]
    assert list(waited[0].values()) == [4, 5]  # the barrier waits for both
    first = submitted[0]
    assert first["name"] == "tune-trial/workers"
    assert first["timeout"] == 0  # submit all, then wait
    assert first["flow_run_name"] == "tune-abc-trial-4"
    assert first["tags"] == ["tune-abc"]
    parameters = first["parameters"]
    assert set(parameters) == set(inspect.signature(tuning.tune_trial.fn).parameters)
    assert parameters["storage_block"] == "optuna-storage"
    assert parameters["remote"] is None
    assert TuneParams.model_validate(parameters["tune_params"]) == job.params
    assert "hunter2" not in repr(submitted)  # the URL travels in a Secret block or the worker's environment


def _features(root: Path) -> dict[str, str]:
    folder = root / tune.FEATURES_DIR
    folder.mkdir(parents=True)
    (folder / "train.parquet").write_bytes(b"train bytes")
    (folder / "val.parquet").write_bytes(b"val bytes")
    return {split: file_md5(folder / f"{split}.parquet") for split in ("train", "val")}


def test_a_worker_reads_its_checkouts_features_when_their_md5_matches(tmp_path: Path) -> None:
    md5s = _features(tmp_path)
    found = tuning.feature_files(md5s, remote=None, root=tmp_path)
    assert found == {split: tmp_path / tune.FEATURES_DIR / f"{split}.parquet" for split in md5s}


def test_a_worker_with_other_features_stops_with_one_line(tmp_path: Path) -> None:
    md5s = _features(tmp_path)
    (tmp_path / tune.FEATURES_DIR / "val.parquet").write_bytes(b"other bytes")
    with pytest.raises(tuning.FeaturesMismatch) as error:
        tuning.feature_files(md5s, remote=None, root=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"data/features/val.parquet: md5 {file_md5(tmp_path / tune.FEATURES_DIR / 'val.parquet')}"
    )
    assert f"differs from {md5s['val']}, the file the tune stage tuned on" in message


def test_a_worker_fetches_features_by_md5_from_the_dvc_remote(tmp_path: Path) -> None:
    from dvc.repo import Repo

    producer = tmp_path / "producer"
    md5s = _features(producer)
    remote = tmp_path / "remote"
    for split, md5 in md5s.items():  # as `dvc push` lays objects out (DVC 3)
        (remote / "files" / "md5" / md5[:2]).mkdir(parents=True, exist_ok=True)
        shutil.copy(producer / tune.FEATURES_DIR / f"{split}.parquet", remote / "files" / "md5" / md5[:2] / md5[2:])
    worker = tmp_path / "worker"
    worker.mkdir()
    Repo.init(str(worker), no_scm=True).close()
    with Repo(str(worker)) as repo, repo.config.edit() as config:
        config["remote"]["shared"] = {"url": str(remote)}

    found = tuning.feature_files(md5s, remote="shared", root=worker)
    assert {split: file_md5(path) for split, path in found.items()} == md5s
    assert all(".dvc/cache/files/md5" in str(path) for path in found.values())

    with pytest.raises(tuning.FeaturesMismatch, match=r"^DVC remote 'shared' holds no object with md5 0{32}$"):
        tuning.feature_files({"train": "0" * 32}, remote="shared", root=worker)


def test_the_barrier_waits_for_every_trial_and_names_the_first_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.states import Completed, Crashed, Failed, Running

    ids = [uuid.uuid4() for _ in range(3)]
    polls: list[list[Any]] = [
        [Running(), Completed(), Running()],
        [
            Crashed(message="worker lost"),
            Completed(),
            Failed(message="FeaturesMismatch: data/features/val.parquet: md5"),
        ],
    ]
    seen: list[int] = []

    class Api:
        def __enter__(self) -> Api:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def read_flow_runs(self, **_: Any) -> list[Any]:
            states = polls[min(len(seen), len(polls) - 1)]
            seen.append(1)
            return [
                SimpleNamespace(id=i, name=f"tune-x-trial-{n}", state=s)
                for n, (i, s) in enumerate(zip(ids, states, strict=True))
            ]

    monkeypatch.setattr(trial_runner, "get_client", lambda **_: Api())
    with pytest.raises(RuntimeError) as error:
        trial_runner._wait({i: n for n, i in enumerate(ids)}, "tune-trial/workers", poll_seconds=0, report_every=60)
    assert len(seen) == 2  # polled until every run was final
    assert str(error.value) == (
        "tune: trial 0 (flow run tune-x-trial-0) ended Crashed: worker lost; 1 more trial(s) of the batch failed"
    )
