"""drift_check: the verdict on injected drift and on a sample without, the windows read batch by batch,
samples drawn by key, a stable report."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pandas as pd
import pytest

from tasks.drift_check import (
    PROCESSED,
    WindowScan,
    column_scores,
    detect_drift,
    metrics,
    read_windows,
    stable_report_ids,
    window_bounds,
)
from tasks.params import DriftGate
from tasks.stage import InputError

GATE = DriftGate()
WHOLE = 10**7  # batch rows: a table read in one batch


@pytest.fixture(autouse=True)
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    return tmp_path


def windows(frame: pd.DataFrame, gate: DriftGate = GATE, batch_rows: int = WHOLE) -> tuple[WindowScan, WindowScan]:
    """`frame` as data/processed.parquet (in the current directory), read into the two windows."""
    frame.to_parquet(PROCESSED, index=False)
    reference, current, _ = read_windows(gate, 42, batch_rows)
    return reference, current


def current_and_reference_windows(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two windows' rows, whole (the default sample is larger than either)."""
    reference, current = windows(frame)
    assert (reference.sample.rows().shape[0], current.sample.rows().shape[0]) == (reference.rows, current.rows)
    return current.sample.rows(), reference.sample.rows()


def test_injected_drift_is_detected(drifted: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(drifted)
    result, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
    assert result.drift_detected
    assert {"unit_price", "country"} <= set(result.drifted_columns)
    assert result.drifted_share >= GATE.threshold


def test_a_sample_without_drift_passes(steady: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(steady)
    result, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
    assert not result.drift_detected
    assert "unit_price" not in result.drifted_columns
    assert result.drifted_share < GATE.threshold


def test_each_column_reports_its_test_score_and_threshold(steady: pd.DataFrame) -> None:
    current, reference = current_and_reference_windows(steady)
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


def test_windows_are_the_last_weeks_and_the_weeks_before(steady: pd.DataFrame) -> None:
    reference_start, current_start = window_bounds(pd.Timestamp("2011-03-31 12:00"), current_weeks=2, reference_weeks=3)
    assert current_start == pd.Timestamp("2011-03-18")  # 14 days before 1 April
    assert reference_start == pd.Timestamp("2011-02-25")
    current, reference = current_and_reference_windows(steady)
    reference_start, current_start = window_bounds(
        steady["invoice_date"].max(), GATE.current_weeks, GATE.reference_weeks
    )
    dates = steady["invoice_date"]
    assert current["invoice_date"].tolist() == dates[dates >= current_start].tolist()
    assert reference["invoice_date"].tolist() == dates[(dates >= reference_start) & (dates < current_start)].tolist()


def test_a_reference_window_without_rows_is_an_error(steady: pd.DataFrame) -> None:
    with pytest.raises(
        InputError, match=r"drift\.reference_weeks: no rows in the 12 weeks before 2010-1.-..; the data"
    ):
        windows(steady, GATE.model_copy(update={"current_weeks": 60}))


def test_an_empty_table_is_an_error(steady: pd.DataFrame) -> None:
    with pytest.raises(InputError, match=r"^data/processed.parquet: no rows to test for drift$"):
        windows(steady.iloc[:0])


def test_window_hash_covers_every_row_and_follows_content(steady: pd.DataFrame) -> None:
    small = GATE.model_copy(update={"sample_rows": 1500})
    sampled, current = windows(steady, small)
    every_row = windows(steady)[0].sample.rows()  # the default sample is the whole window
    row_hashes = pd.util.hash_pandas_object(every_row[GATE.columns], index=False).to_numpy()
    expected = hashlib.md5(row_hashes.tobytes()).hexdigest()
    assert sampled.describe("r", 1500).md5 == expected != current.describe("c", 1500).md5
    assert (sampled.rows, len(sampled.sample.rows())) == (len(every_row), 1500)
    changed = steady.copy()
    changed.loc[changed.index[-1], "unit_price"] += 1  # the last row is in the current window
    assert windows(changed, small)[1].describe("c", 1500).md5 != current.describe("c", 1500).md5


def test_metrics_carry_the_verdict_and_what_was_compared(drifted: pd.DataFrame) -> None:
    reference, current = windows(drifted, GATE.model_copy(update={"sample_rows": 2000}))
    tested = reference.sample.rows(), current.sample.rows()
    result, _ = detect_drift(*tested, GATE.columns, GATE.threshold)
    record = metrics(result, reference.describe("ref", len(tested[0])), current.describe("cur", len(tested[1])), 2000)
    assert record["drift_detected"] is True
    assert record["drifted_count"] == len(result.drifted_columns)
    assert record["columns_checked"] == GATE.columns
    assert record["reference"]["rows"] == reference.rows > 2000  # type: ignore[index]
    assert record["current"]["rows_tested"] == record["sample_rows"] == 2000  # type: ignore[index]
    assert record["current"]["md5"] != record["reference"]["md5"]  # type: ignore[index]
    assert record["report"] == "reports/drift.html"


def test_report_renders_to_the_same_bytes_twice(steady: pd.DataFrame, tmp_path: Path) -> None:
    current, reference = current_and_reference_windows(steady)
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


@pytest.mark.parametrize("batch_rows", [WHOLE, 4096, 777])
def test_a_sample_is_the_same_however_the_table_is_cut(steady: pd.DataFrame, batch_rows: int) -> None:
    small = GATE.model_copy(update={"sample_rows": 1500})
    expected = [window.sample.rows() for window in windows(steady, small)]
    cut = windows(steady, small, batch_rows)
    for window, rows in zip(cut, expected, strict=True):
        pd.testing.assert_frame_equal(window.sample.rows(), rows)
        assert rows["invoice_date"].is_monotonic_increasing  # in the table's order
    assert [w.describe("w", 1500) for w in cut] == [w.describe("w", 1500) for w in windows(steady, small)]


def test_a_sample_gives_the_verdicts_the_whole_windows_give(steady: pd.DataFrame, drifted: pd.DataFrame) -> None:
    for frame in (steady, drifted):
        current, reference = current_and_reference_windows(frame)
        assert len(reference) > 3000
        whole, _ = detect_drift(reference, current, GATE.columns, GATE.threshold)
        tested = windows(frame, GATE.model_copy(update={"sample_rows": 1500}))
        sampled, _ = detect_drift(tested[0].sample.rows(), tested[1].sample.rows(), GATE.columns, GATE.threshold)
        assert sampled.drift_detected == whole.drift_detected
        assert [c.test for c in sampled.columns.values()] == [c.test for c in whole.columns.values()]
