"""The pieces behind the console and evidence packs: vendored files as pinned, the model card's one-line
errors, metrics read back from the ledger's properties, the tuning chart's bytes, reproductions' match
tables, Chromium's absence, and the Prefect summary's link to the console."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from lineage.configuration import flatten, unflatten
from lineage.console.charts import tuning_chart
from lineage.console.graph import to_dot
from lineage.entities import ActionStatus, ModelStatus
from lineage.model_card import CardError, parse, recorded
from lineage.query import Direction
from lineage.reproduce import Row, expected, record
from lineage.store import LedgerStore
from lineage.views import lineage_graph, version_view
from tests.conftest import REPO, record_two_weeks

STATIC = REPO / "lineage" / "console" / "static"


def test_vendored_files_are_the_pinned_ones() -> None:
    manifest = json.loads((STATIC / "vendor.json").read_text())
    named = {name for package in manifest["packages"] for name in package["files"].values()}
    assert named == set(manifest["sha256"])
    for name, digest in manifest["sha256"].items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, f"{name} differs from vendor.json"
    for package in manifest["packages"]:
        assert package["license"]
        assert package["integrity"].startswith("sha512-")


CARD = (REPO / "model_card.yaml").read_text()


def test_the_model_card_validates_and_bad_ones_say_where() -> None:
    card = parse(CARD)
    assert card.provider.contact
    assert card.intended_users
    blank_name = CARD.replace("  name: Retail Analytics, Example Retail Ltd", '  name: "  "')
    cases = {
        CARD + "\nsurprise: 1\n": "key 'surprise': unknown key",
        CARD.replace("intended_purpose:", "intended_purpose_typo:"): "key 'intended_purpose': field required",
        "model: [unclosed\n": "not valid YAML (line 2)",
        "- a list\n": "must be a mapping of keys (model, provider, intended_purpose, ...)",
        blank_name: "key 'provider.name': string should have at least 1 character",
    }
    for text, said in cases.items():
        with pytest.raises(CardError) as raised:
            parse(text)
        assert str(raised.value) == f"model_card.yaml: {said}"


def test_the_card_a_run_recorded_is_found_by_its_md5_or_not_at_all(tmp_path: Path) -> None:
    from lineage.entities import Artifact, ArtifactType

    (tmp_path / "model_card.yaml").write_text(CARD)
    artifact = Artifact(
        artifact_type=ArtifactType.CONFIGURATION,
        source_uri="model_card.yaml",
        md5=hashlib.md5(CARD.encode()).hexdigest(),
    )
    text, note = recorded(artifact, tmp_path)
    assert text == CARD
    assert note.startswith(f"as recorded with the run (md5 {artifact.md5}, from model_card.yaml in ")
    (tmp_path / "model_card.yaml").write_text(CARD + "# edited since\n")
    assert recorded(artifact, tmp_path) == (
        None,
        f"the card recorded with the run (md5 {artifact.md5}) is neither in git here nor in model_card.yaml",
    )
    assert recorded(None, tmp_path)[1] == "the run recorded no model card (it predates model_card.yaml)"


def test_metrics_come_back_from_the_ledger_as_they_were_written() -> None:
    written = {
        "columns": {"unit_price": {"drifted": False, "score": 0.04, "test": "Wasserstein"}},
        "columns_checked": ["unit_price", "country"],
        "attributes": {"country": {"privileged_value": "United Kingdom", "criteria": {"x": {"interval": [1.0, 2.5]}}}},
        "passed": True,
        "rows": 12,
    }
    assert unflatten(flatten(written)) == written


def test_the_tuning_chart_is_the_same_bytes_every_time() -> None:
    tuning = {
        "trials": [
            {"trial": 0, "state": "COMPLETE", "val_loss": 0.4},
            {"trial": 1, "state": "PRUNED", "val_loss": 0.9},
        ],
        "epochs": [
            {"trial": 0, "epoch": 1, "val_loss": 0.6},
            {"trial": 0, "epoch": 2, "val_loss": 0.4},
            {"trial": 1, "epoch": 1, "val_loss": 0.9},
        ],
    }
    first = tuning_chart(tuning, "a")
    assert first is not None
    assert first.startswith(b"<?xml")
    assert b"trial 0 (best)" in first
    assert tuning_chart(tuning, "b") == first  # drawn again (another key): the same bytes
    assert tuning_chart({"trials": tuning["trials"], "epochs": None}, "c") is None


def test_a_reproduction_shows_its_match_table(tmp_path: Path) -> None:
    with LedgerStore(f"sqlite:///{tmp_path / 'lineage.db'}") as store:
        (good, _), _ = record_two_weeks(store, tmp_path)
        assert version_view(store, good)["reproductions"] == []
        want = expected(store, good)
        rows = [Row(path, md5, md5) for path, md5 in want.hashes.items()]
        rows[-1] = Row(rows[-1].artifact, rows[-1].recorded, "f" * 32)
        action = record(store, want, rows, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), f"lineage reproduce {good}")
        shown = version_view(store, good)["reproductions"]
    assert len(shown) == 1
    assert (shown[0]["id"], shown[0]["ok"], shown[0]["mismatched"]) == (action.id, False, [rows[-1].artifact])
    table = {row["artifact"]: (row["recorded"], row["reproduced"], row["match"]) for row in shown[0]["artifacts"]}
    assert table == {row.artifact: (row.recorded, row.reproduced, row.match) for row in rows}
    assert any(path.endswith(".py") for path in table)  # code files are compared too


def test_the_graph_draws_failed_actions_and_rejected_versions_in_red(tmp_path: Path) -> None:
    """Each status in its enum's spelling: an action's ActionStatus, a version's ModelStatus."""
    with LedgerStore(f"sqlite:///{tmp_path / 'lineage.db'}") as store:
        (_, bad), _ = record_two_weeks(store, tmp_path)  # week 2: fairness failed, the version rejected
        graph = lineage_graph(store, bad, Direction.ASCENDANTS, 10)
    drawn = to_dot(graph, True, lambda _: None).splitlines()
    red_ids = {json.loads(line.split(" [")[0]) for line in drawn if "#cf222e" in line}
    red = [vertex for vertex in graph["vertices"] if vertex["id"] in red_ids]
    assert sorted((v["type"], v["details"].get("status") or v["details"]["properties"]["status"]) for v in red) == [
        ("FairnessGate", ActionStatus.FAILED),
        ("ModelVersion", ModelStatus.REJECTED),
    ]
    assert {v["label"] for v in red if v["kind"] == "context"} == {bad}


def test_without_chromium_an_evidence_pack_stops_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from lineage import chromium

    monkeypatch.setenv("LINEAGE_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(chromium.ChromiumError) as raised:
        chromium.find()
    assert str(raised.value) == (
        "no Chromium: install Debian's chromium (apt install chromium), or set LINEAGE_CHROMIUM "
        "(/nonexistent/chromium is not executable)"
    )


def test_the_prefect_summary_links_to_the_console_when_told_where(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.publish import console_link

    monkeypatch.delenv("LINEAGE_CONSOLE_URL", raising=False)
    assert console_link("model-abc") == ""
    monkeypatch.setenv("LINEAGE_CONSOLE_URL", "{{ $LINEAGE_CONSOLE_URL }}")  # a deployment template left unfilled
    assert console_link("model-abc") == ""
    monkeypatch.setenv("LINEAGE_CONSOLE_URL", "https://lineage.example/")
    assert (
        console_link("model-abc")
        == " [Open model-abc in the lineage console](https://lineage.example/models/model-abc)."
    )
