"""drift_check: the verdict on injected drift and on a sample without, the windows, a stable report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.drift_check import (
    column_scores,
    current_and_reference_windows,
    describe_window,
    detect_drift,
    metrics,
    sample,
    stable_report_ids,
)
from tasks.params import DriftGate
from tasks.stage import InputError

GATE = DriftGate()


def test_injected_drift_is_detected(drifted: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(drifted, GATE.current_weeks, GATE.reference_weeks)
    result, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
    assert result.drift_detected
    assert {"unit_price", "country"} <= set(result.drifted_columns)
    assert result.drifted_share >= GATE.threshold


def test_a_sample_without_drift_passes(steady: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(steady, GATE.current_weeks, GATE.reference_weeks)
    result, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
    assert not result.drift_detected
    assert "unit_price" not in result.drifted_columns
    assert result.drifted_share < GATE.threshold


def test_each_column_reports_its_test_score_and_threshold(steady: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(steady, GATE.current_weeks, GATE.reference_weeks)
    result, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
    assert list(result.columns) == GATE.columns
    for name, column in result.columns.items():
        assert column.test, name
        assert column.threshold > 0
        assert column.score >= 0
    # binary and text columns are compared as categories, numbers by distance
    assert "Wasserstein" in result.columns["unit_price"].test
    assert result.columns["country"].test == result.columns["is_registered"].test
    scores = column_scores(result)
    assert [s["column"] for s in scores] == GATE.columns


def test_windows_are_the_last_weeks_and_the_weeks_before() -> None:
    dates = pd.date_range("2011-01-01", "2011-03-31 12:00", freq="12h")
    frame = pd.DataFrame({"invoice_date": dates})
    current, reference = current_and_reference_windows(frame, current_weeks=2, reference_weeks=3)
    assert current["invoice_date"].min() == pd.Timestamp("2011-03-18")  # 14 days before 1 April
    assert current["invoice_date"].max() == dates.max()
    assert reference["invoice_date"].min() == pd.Timestamp("2011-02-25")
    assert reference["invoice_date"].max() < current["invoice_date"].min()


def test_a_reference_window_without_rows_is_an_error() -> None:
    frame = pd.DataFrame({"invoice_date": pd.date_range("2011-03-01", "2011-03-10", freq="D")})
    with pytest.raises(InputError, match=r"drift\.reference_weeks: no rows in the 8 weeks before 2011-02-25"):
        current_and_reference_windows(frame, current_weeks=2, reference_weeks=8)


def test_window_hash_follows_content(steady: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(steady, GATE.current_weeks, GATE.reference_weeks)
    first = describe_window(current, GATE.columns, "current", 1500)
    assert first == describe_window(current.copy(), GATE.columns, "current", 1500)
    assert first.md5 != describe_window(reference, GATE.columns, "current", 1500).md5
    assert (first.rows, first.rows_tested) == (len(current), 1500)


def test_metrics_carry_the_verdict_and_what_was_compared(drifted: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(drifted, GATE.current_weeks, GATE.reference_weeks)
    result, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
    record = metrics(
        result,
        describe_window(reference, GATE.columns, "ref", len(reference)),
        describe_window(current, GATE.columns, "cur", 2000),
        sample_rows=2000,
    )
    assert record["drift_detected"] is True
    assert record["drifted_count"] == len(result.drifted_columns)
    assert record["columns_checked"] == GATE.columns
    assert record["reference"]["rows"] == record["reference"]["rows_tested"] == len(reference)  # type: ignore[index]
    assert record["current"]["rows_tested"] == record["sample_rows"] == 2000  # type: ignore[index]
    assert record["current"]["md5"] != record["reference"]["md5"]  # type: ignore[index]
    assert record["report"] == "reports/drift.html"


def test_report_renders_to_the_same_bytes_twice(steady: pd.DataFrame, tmp_path: Path) -> None:
    current, reference = current_and_reference_windows(steady, GATE.current_weeks, GATE.reference_weeks)
    pages = []
    for attempt in range(2):
        _, snapshot = detect_drift(reference, current, GATE.columns, GATE.threshold)
        path = tmp_path / f"report{attempt}.html"
        snapshot.save_html(str(path))
        raw = path.read_text(encoding="utf-8")
        pages.append((raw, stable_report_ids(raw)))
    assert pages[0][0] != pages[1][0]  # Evidently stamps fresh random ids on every render...
    assert pages[0][1] == pages[1][1]  # ...which the stage replaces with counters
    page = pages[0][1]
    start = page.index("var metric_")
    data_script = page[start : page.index("</script>", start)]
    uuids = re.findall(r"[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", data_script)
    assert uuids
    assert all(u.startswith("00000000-0000-0000-0000-") for u in uuids)
    assert not re.search(r"metric_(?!0{20})[0-9a-f]{32}", page)
    namespace_dns = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"  # a constant in the bundled JavaScript
    assert namespace_dns in pages[0][0]
    assert namespace_dns in page


def test_sample_is_seeded_in_order_and_leaves_small_windows_whole() -> None:
    frame = pd.DataFrame({"value": np.arange(100) * 10}, index=np.arange(100) + 1000)
    assert sample(frame, 100, seed=1) is frame
    assert sample(frame, 500, seed=1) is frame
    drawn = sample(frame, 7, seed=1)
    positions = [3, 14, 44, 48, 72, 82, 92]  # numpy's draw for seed 1, in the frame's order
    assert drawn.index.tolist() == [1000 + p for p in positions]
    assert drawn["value"].tolist() == [10 * p for p in positions]
    pd.testing.assert_frame_equal(drawn, sample(frame, 7, seed=1))
    assert not drawn.equals(sample(frame, 7, seed=2))


def test_a_sample_gives_the_verdicts_the_whole_windows_give(steady: pd.DataFrame, drifted: pd.DataFrame) -> None:
    for frame in (steady, drifted):
        current, reference = current_and_reference_windows(frame, GATE.current_weeks, GATE.reference_weeks)
        assert len(reference) > 3000
        whole, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
        sampled, _ = detect_drift(sample(reference, 1500, 42), sample(current, 1500, 43), GATE.columns, GATE.threshold)
        assert sampled.drift_detected == whole.drift_detected
        assert [c.test for c in sampled.columns.values()] == [c.test for c in whole.columns.values()]
