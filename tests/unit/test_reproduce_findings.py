"""What `lineage reproduce` says of a mismatch: the first artifact that differs, what lies downstream of it,
and what differs between the recorded platform and this one (or which facts were equal)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lineage.entities import Action, ActionStatus, ActionType, Context, ContextType
from lineage.reproduce import Expected, Findings, PlatformComparison, Report, Row, examine

PLATFORM = {
    "architecture": "x86_64",
    "cpu": "AMD EPYC 9R14",
    "cpu_level": "avx512",
    "numeric_level": "avx2",
    "numpy_dispatch": "AVX2",
    "torch_capability": "AVX2",
    "version.torch": "2.13.0+cpu",
}


def _stage(deps: list[tuple[str, str]], outs: list[tuple[str, str]]) -> dict[str, list[dict[str, str]]]:
    return {"deps": [{"path": p, "md5": m} for p, m in deps], "outs": [{"path": p, "md5": m} for p, m in outs]}


LOCK = {  # dvc.lock's stages in dvc.yaml's order
    "stages": {
        "etl": _stage([("tasks/etl.py", "e")], [("data/processed.parquet", "p")]),
        "drift_check": _stage([("data/processed.parquet", "p")], [("reports/drift.html", "r")]),
        "preprocess": _stage([("data/processed.parquet", "p")], [("data/features/train.parquet", "f")]),
        "tune": _stage(
            [("data/features/train.parquet", "f"), ("tasks/tune.py", "t")],
            [("models/model.pt", "m"), ("metrics/tune.json", "j")],
        ),
        "inference": _stage([("models/model.pt", "m")], [("data/predictions.parquet", "d")]),
    }
}


def _want(platform: dict[str, str] | None) -> Expected:
    version = Context(context_type=ContextType.MODEL_VERSION, name="model-abc")
    return Expected(
        version=version,
        flow_run_id="run-1",
        commit="c0ffee",
        params_md5="params",
        hashes={},
        originals={},
        platform=platform,
    )


def _report(tree: Path, rows: list[Row], recorded: dict[str, str] | None, here: dict[str, str]) -> Report:
    (tree / "dvc.lock").write_text(yaml.safe_dump(LOCK, sort_keys=False))
    want = _want(recorded)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lineage.reproduce.this_platform", lambda _tree: here)
        findings = examine(tree, want, rows)
    action = Action(action_type=ActionType.REPRODUCTION, status=ActionStatus.FAILED, start=dt.datetime.now(dt.UTC))
    return Report(want, rows, action, findings)


def test_a_mismatch_names_the_first_difference_and_what_it_reaches(tmp_path: Path) -> None:
    rows = [
        Row("data/processed.parquet", "p", "p"),
        Row("models/model.pt", "m", "m2"),
        Row("metrics/tune.json", "j", "j2"),
        Row("data/predictions.parquet", "d", "d2"),
        Row("reports/drift.html", "r", "r2"),
    ]
    here = {**PLATFORM, "cpu": "Intel Xeon", "version.torch": "2.14.1+cpu"}
    report = _report(tmp_path, rows, PLATFORM, here)
    assert report.findings.first_difference == "reports/drift.html"  # drift_check's out, in lock order
    lines = report.table().splitlines()
    assert "model-abc: 4 mismatch(es)" in lines
    assert "first difference: reports/drift.html; downstream of it: none" in lines
    assert "also different, not downstream of it: models/model.pt, metrics/tune.json, data/predictions.parquet" in lines
    assert "platform differs: version.torch 2.13.0+cpu recorded, 2.14.1+cpu here" in lines
    assert "platform differs in cpu, which the numeric platform keeps from the bytes" in lines
    assert report.as_dict()["platform"]["differences"] == {
        "cpu": ["AMD EPYC 9R14", "Intel Xeon"],
        "version.torch": ["2.13.0+cpu", "2.14.1+cpu"],
    }


def test_the_downstream_of_a_model_difference(tmp_path: Path) -> None:
    rows = [Row("models/model.pt", "m", "m2"), Row("data/predictions.parquet", "d", "d2")]
    report = _report(tmp_path, rows, PLATFORM, PLATFORM)
    assert report.findings.first_difference == "models/model.pt"
    assert report.findings.downstream == ["data/predictions.parquet"]  # tune's other outputs are no descendants
    assert (
        "platform equal: architecture, cpu, cpu_level, numeric_level, numpy_dispatch, torch_capability, version.torch"
        in report.table()
    )


def test_another_architecture_is_said_in_one_line(tmp_path: Path) -> None:
    here = {**PLATFORM, "architecture": "aarch64", "numpy_dispatch": "ASIMD"}
    report = _report(tmp_path, [Row("models/model.pt", "m", "m2")], PLATFORM, here)
    lines = report.table().splitlines()
    assert "this machine is aarch64, the model was built on x86_64: another architecture gives other bytes" in lines


def test_a_match_says_which_facts_were_equal_and_an_unrecorded_platform_says_so(tmp_path: Path) -> None:
    matched = _report(tmp_path, [Row("models/model.pt", "m", "m")], PLATFORM, PLATFORM)
    assert matched.ok
    assert matched.table().splitlines()[-3:] == [
        "model-abc: reproduced byte for byte",
        "platform equal: architecture, cpu, cpu_level, numeric_level, numpy_dispatch, torch_capability, version.torch",
        "image: the run's unknown, this reproduction's none (this machine's environment)",
    ]
    unknown = _report(tmp_path, [Row("models/model.pt", "m", "m")], None, PLATFORM)
    assert unknown.table().splitlines()[-2] == "platform: the run recorded none (recorded before the ledger kept it)"
    assert isinstance(unknown.findings, Findings)
    assert isinstance(unknown.findings.platform, PlatformComparison)


def test_the_report_names_the_image_by_digest_the_run_and_the_reproduction_ran_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = "registry.example/retail-lineage-worker@sha256:" + "a" * 64
    here = recorded.replace("a" * 64, "b" * 64)
    monkeypatch.setenv("IMAGE_URI", here)
    report = _report(tmp_path, [Row("models/model.pt", "m", "m")], PLATFORM, PLATFORM)
    report = Report(replace(report.expected, image=recorded), report.rows, report.action, report.findings)
    assert report.table().splitlines()[-1] == f"image: the run's {recorded}, this reproduction's {here}"
    assert report.as_dict()["image"] == {"recorded": recorded, "here": here}


def test_a_run_on_a_dask_cluster_is_no_platform_difference() -> None:
    cluster = {"dask_scheduler": "tcp://scheduler:8786", "dask_workers": "3", "dask_worker_versions": "dask 2026.11.0"}
    lines = PlatformComparison({**PLATFORM, **cluster}, PLATFORM).lines(ok=True)
    assert (
        "the stages ran elsewhere (dask_scheduler, dask_worker_versions, dask_workers), which changes no byte" in lines
    )
    assert not [line for line in lines if line.startswith("platform differs")]
