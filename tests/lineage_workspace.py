"""A stand-in workspace for ledger tests and benchmarks: the real dvc.yaml's stages, with a dvc.lock,
params.yaml and metrics files as a run would leave them, without running the pipeline.

Data md5s derive from `week`, so each week is new data and a new model; code md5s stay the same,
so code artifacts are shared across weeks, as in a real ledger.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from gates.gate import NoOverride
from lineage.entities import ActionStatus
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.store import LedgerStore

REPO = Path(__file__).resolve().parent.parent
STAGES = ["etl", "drift_check", "preprocess", "tune", "inference", "fairness"]


def _paths(entries: list[Any]) -> list[str]:
    return [next(iter(entry)) if isinstance(entry, dict) else str(entry) for entry in entries]


def _md5(*parts: object) -> str:
    return hashlib.md5(json.dumps(parts).encode()).hexdigest()


_FAIRNESS = {True: "is_registered: log-residual gap 0.04 <= 0.25", False: "is_registered: log-residual gap 0.61 > 0.25"}
# What a run's typed params hand the recorder when drift is allowed (RunInfo.overrides).
ALLOWED = {"drift": NoOverride(allow=True, allowed_by="Ana Ruiz", reason="reviewed")}


def _metrics(stage: str, week: int, drift: bool, fair: bool, accurate: bool = True) -> dict[str, Any]:
    by_stage: dict[str, dict[str, Any]] = {
        "etl": {"rows": {"read": 5000 + week, "written": 4800 + week}},
        "drift_check": {
            "drift_detected": drift,
            "drifted_columns": ["unit_price"] if drift else [],
            "drifted_share": 0.5 if drift else 0.0,
            "drifted_count": 1 if drift else 0,
            "columns_checked": ["unit_price", "country"],
            "columns": {
                "unit_price": {
                    "drifted": drift,
                    "score": 0.3 if drift else 0.05,
                    "test": "Wasserstein distance (normed)",
                    "threshold": 0.1,
                },
                "country": {"drifted": False, "score": 0.02, "test": "Jensen-Shannon distance", "threshold": 0.1},
            },
            "threshold": 0.5,
            "report": "reports/drift.html",
        },
        "preprocess": {"rows": {"train": 3000, "val": 900, "test": 900}, "drift_gate": {"overridden": False}},
        "tune": {"validation": {"rmsle": 0.5 + week / 1e6}, "trials": {"completed": 4, "pruned": 1}},
        "inference": {
            "test": {"rmsle": 0.53},
            "baseline_test": {"rmsle": 0.52},
            "rmsle_vs_baseline": 1.02,
            "accuracy": {
                "network_rmsle": 0.53 if accurate else 0.6,
                "baseline_rmsle": 0.52,
                "ratio": 1.0192 if accurate else 1.15,
                "interval": [1.01, 1.03] if accurate else [1.1, 1.2],
                "judged": 1.03 if accurate else 1.2,
                "judge": "interval",
                "max_ratio": 1.1,
                "confidence": 0.95,
                "bootstrap_samples": 1000,
                "seed": 42,
                "passed": accurate,
            },
        },
        "fairness": {
            "passed": fair,
            "reason": _FAIRNESS[fair],
            "policy": {"judge": "interval", "criteria": ["log_residual_gap"], "min_group_rows": 200},
            "attributes": {
                "is_registered": {
                    "passed": fair,
                    "reason": _FAIRNESS[fair],
                    "privileged_value": 1,
                    "groups": {
                        "privileged": {
                            "rows": 4000,
                            "rmsle": 0.55,
                            "mae": 5.1,
                            "mean_log_residual": -0.02,
                            "mean_prediction": 8.1,
                            "mean_actual": 9.0,
                        },
                        "unprivileged": {
                            "rows": 800,
                            "rmsle": 0.5 if fair else 1.1,
                            "mae": 2.0,
                            "mean_log_residual": 0.02 if fair else 0.59,
                            "mean_prediction": 3.0,
                            "mean_actual": 3.4,
                        },
                    },
                    "criteria": {
                        "log_residual_gap": {
                            "value": 0.04 if fair else 0.61,
                            "interval": [0.01, 0.07 if fair else 0.7],
                            "judged": 0.07 if fair else 0.7,
                            "bound": 0.25,
                            "decides": True,
                            "passed": fair,
                        },
                    },
                }
            },
        },
    }
    return by_stage[stage] | {"week": week}  # every week's metrics differ, as real ones do


def write_workspace(
    root: Path, week: int = 0, drift: bool = False, fair: bool = True, allow_drift: bool = False, accurate: bool = True
) -> None:
    """Write dvc.lock, params.yaml and metrics/*.json under `root` as week `week`'s run leaves them."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    allowed = ALLOWED["drift"]
    drift_params = {"allow": True, "allowed_by": allowed.allowed_by, "reason": allowed.reason} if allow_drift else {}
    params = {"seed": 42, "drift": drift_params}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    lock: dict[str, Any] = {"schema": "2.0", "stages": {}}
    for stage in STAGES:
        spec = stages[stage]
        outs = []
        for path in _paths(spec.get("outs", [])) + _paths(spec.get("metrics", [])) + _paths(spec.get("plots", [])):
            if path.startswith("metrics/"):
                text = json.dumps(_metrics(stage, week, drift, fair, accurate), indent=2, sort_keys=True)
                (root / path).write_text(text, encoding="utf-8")
                md5 = hashlib.md5(text.encode()).hexdigest()
            else:
                md5 = _md5("out", path, week)
            made[path] = md5
            outs.append({"path": path, "hash": "md5", "md5": md5, "size": 1000 + len(path)})
        deps = []
        for path in _paths(spec.get("deps", [])):
            md5 = made.get(path) or (_md5("code", path) if path.endswith(".py") else _md5("raw", path, week))
            if path in ("data/raw", "data/reference"):
                md5 += ".dir"
            deps.append({"path": path, "hash": "md5", "md5": md5, "size": 500})
        lock["stages"][stage] = {
            "cmd": spec["cmd"],
            "deps": deps,
            "params": {"params.yaml": {"seed": 42}},
            "outs": outs,
        }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")


def run_info(week: int) -> RunInfo:
    start = dt.datetime(2026, 1, 5, 6, tzinfo=dt.UTC) + dt.timedelta(weeks=week)
    stages = [
        StageRun(stage, ActionStatus.COMPLETED, start, start + dt.timedelta(minutes=index + 1), str(uuid.uuid4()))
        for index, stage in enumerate(STAGES)
    ]
    return RunInfo(str(uuid.uuid4()), stages, start, start + dt.timedelta(minutes=7), pushed_to=f"runs/{week}")


def record_week(store: LedgerStore, root: Path, week: int) -> float:
    write_workspace(root, week, fair=week % 10 != 3)  # one run in ten fails the fairness gate
    began = time.perf_counter()
    record_run(store, run_info(week), root)
    return time.perf_counter() - began
