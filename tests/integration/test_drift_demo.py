"""The drift demo of docs/stages/drift_check.md, run as written: the doc's own params.yaml edit, then what
`make run` runs, on the small-params built clone; the outcome is what the doc says. The same edit with the
date unquoted is refused in one line before any work."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from flows.workspace import NotStarted, check_before_work
from lineage import registry
from lineage.store import LedgerStore
from tests.conftest import GIT_ENV, REPO, VENV_BIN, run_module, stage_env

pytestmark = pytest.mark.integration

DOC = REPO / "docs" / "stages" / "drift_check.md"


def _documented_edit() -> tuple[str, str]:
    """The key and the value text the demo tells people to set, exactly as the doc writes them."""
    text = " ".join(DOC.read_text().split())
    demo = re.search(
        r"To see the gate work on synthetic data, set `([\w.]+): ([^`]+)` in `params.yaml` and run `make run`", text
    )
    assert demo, "the drift demo's sentence is not in docs/stages/drift_check.md"
    return demo[1], demo[2]


def _set(params: str, dotted: str, value: str) -> str:
    """params.yaml's text with the key `dotted` given `value` as YAML text, as an editor would: its comment kept."""
    lines = params.splitlines(keepends=True)
    at, indent = 0, -1
    for part in dotted.split("."):
        at = next(
            i for i in range(at, len(lines))
            if lines[i].lstrip().startswith(f"{part}:") and len(lines[i]) - len(lines[i].lstrip()) > indent
        )  # fmt: skip
        indent = len(lines[at]) - len(lines[at].lstrip())
    key, _, rest = lines[at].partition(":")
    comment = rest.partition(" #")[2]
    lines[at] = f"{key}: {value}" + (f"  #{comment}" if comment else "\n")
    return "".join(lines)


def test_the_documented_drift_demo_fails_the_run_at_the_gate(built_copy: Path, tmp_path: Path) -> None:
    key, value = _documented_edit()
    assert (key, value) == ("data.inject_drift.start", '"2011-11-01"')  # quoted: what DVC can read
    params = built_copy / "params.yaml"
    params.write_text(_set(params.read_text(), key, value))
    assert yaml.safe_load(params.read_text())["data"]["inject_drift"]["start"] == "2011-11-01"

    # `make run`: the flow on a temporary local Prefect API, then the summary.
    env = {name: v for name, v in stage_env(**GIT_ENV).items() if not name.startswith("PREFECT_")}
    env |= {"LINEAGE_DB_URL": f"sqlite:///{built_copy / 'lineage.db'}", "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
    python = str(VENV_BIN / "python")
    flow = subprocess.run([python, "-m", "flows.pipeline"], cwd=built_copy, env=env, capture_output=True, text=True)
    said = flow.stdout + flow.stderr
    assert flow.returncode == 1, said[-3000:]
    assert re.search(r"drift detected in [^\n]*unit_price[^\n]*; see reports/drift\.html", said), said[-3000:]
    assert "Traceback" not in said
    ran = {re.sub(r"-\d+$", "", name) for name in re.findall(r"Task run '([\w-]+)'", said)}
    assert {"etl", "drift_check"} <= ran
    assert not {"preprocess", "tune", "inference", "fairness"} & ran, ran
    assert json.loads((built_copy / "metrics/drift_check.json").read_text())["drift_detected"] is True
    with LedgerStore(env["LINEAGE_DB_URL"]) as store:
        assert registry.versions(store) == []  # no model version recorded, none promoted

    summary = subprocess.run([python, "-m", "flows.summary"], cwd=built_copy, env=env, capture_output=True, text=True)
    lines = summary.stdout.splitlines()
    assert any(
        re.fullmatch(r"drift_check\s+FAILED: share of drifted columns .*unit_price.*", line) for line in lines
    ), summary.stdout
    assert any(re.fullmatch(r"gates\s+NOT passed: do not promote", line) for line in lines), summary.stdout


def test_the_demo_with_the_date_unquoted_is_refused_before_any_work(
    built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, value = _documented_edit()
    params = built_copy / "params.yaml"
    params.write_text(_set(params.read_text(), key, value.strip('"')))
    said = (
        'params.yaml: data.inject_drift.start: 2011-11-01 is a YAML date, which DVC cannot read; quote it: "2011-11-01"'
    )
    stage = run_module(built_copy, "tasks.etl")  # as `dvc repro` or a person would run it
    assert stage.returncode != 0
    assert stage.stderr.splitlines() == [f"etl: error: {said}"]
    monkeypatch.chdir(built_copy)  # the flow's check before any work
    with pytest.raises(NotStarted) as refused:
        check_before_work(f"sqlite:///{built_copy / 'lineage.db'}")
    assert str(refused.value) == said
    assert not (built_copy / "lineage.db").exists()
    assert os.path.getmtime(built_copy / "data/processed.parquet") < os.path.getmtime(params)  # etl wrote nothing
