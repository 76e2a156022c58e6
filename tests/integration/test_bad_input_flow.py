"""Bad input through the whole flow: each is one clear line, never retried, and loses nothing.

Every case starts from a workspace whose model is in production. Afterwards the production version,
its model bytes in the DVC cache and every earlier ledger record are unchanged. A bad input caught
before any work (params, dvc.lock, the ledger) records nothing; one a stage or the workspace check
rejects is recorded as a failed run, appended after the earlier records.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lineage import registry
from lineage.store import Head, LedgerStore
from tasks.data import generate_transactions
from tasks.params import DriftInjection
from tasks.stage import file_md5
from tests.conftest import VENV_BIN, locked_outs, run, run_flow, set_params, stage_env
from tests.unit.test_bad_inputs import CASES as LOADER_CASES

pytestmark = pytest.mark.integration


@dataclass
class Before:
    head: Head
    production: str
    model_md5: str


@pytest.fixture(scope="module")
def in_production(harness: None, built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built workspace after one flow run: its model is in production."""
    workspace = Path(shutil.copytree(built[0], tmp_path_factory.mktemp("production") / "ws", symlinks=True))
    with pytest.MonkeyPatch.context() as monkeypatch:
        state, _ = run_flow(workspace, monkeypatch)
    assert state.is_completed(), state.message
    return workspace


@pytest.fixture
def workspace(in_production: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(in_production, tmp_path / "ws", symlinks=True))


def _before(workspace: Path) -> Before:
    with LedgerStore(f"sqlite:///{workspace / 'lineage.db'}") as store:
        version = registry.production(store)
        assert version is not None
        return Before(store.head(), version.name, str(version.properties["model_md5"]))


def _assert_nothing_lost(workspace: Path, before: Before, *, recorded: bool) -> None:
    with LedgerStore(f"sqlite:///{workspace / 'lineage.db'}") as store:
        assert store.verify(before.head).ok  # every earlier record as it was
        assert (store.head().count > before.head.count) == recorded
        version = registry.production(store)
        assert version is not None
        assert version.name == before.production
    cached = workspace / ".dvc/cache/files/md5" / before.model_md5[:2] / before.model_md5[2:]
    assert file_md5(cached) == before.model_md5  # the production model's bytes


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300] + b"\n  oops: [unclosed\n")


# (id, change to the workspace, the run's one-line message)
BEFORE_ANY_WORK: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "unknown_key",
        lambda ws: set_params(ws, data={"colour": "red"}),
        "params.yaml: data.colour: unknown key",
    ),
    (
        "wrong_type",
        lambda ws: set_params(ws, tune={"n_trials": "20"}),
        "params.yaml: tune.n_trials: Input should be a valid integer (got '20')",
    ),
    (
        "negative_threshold",
        lambda ws: set_params(ws, fairness={"mod_threshold": -1.0}),
        "params.yaml: fairness.mod_threshold: Input should be greater than or equal to 0 (got -1.0)",
    ),
    (
        "zero_trials",
        lambda ws: set_params(ws, tune={"n_trials": 0}),
        "params.yaml: tune.n_trials: Input should be greater than 0 (got 0)",
    ),
    (
        "model_card_unknown_key",
        lambda ws: _append(ws / "model_card.yaml", "reviewed: yes\n"),
        "model_card.yaml: key 'reviewed': unknown key",
    ),
    (
        "corrupted_dvc_lock",
        lambda ws: _corrupt(ws / "dvc.lock"),
        "unable to read: 'dvc.lock', YAML file structure is corrupted; restore it from git or from a run record "
        "(runs/<id>/)",
    ),
]


@pytest.mark.parametrize(("change", "message"), [c[1:] for c in BEFORE_ANY_WORK], ids=[c[0] for c in BEFORE_ANY_WORK])
def test_caught_before_any_work(
    harness: None, workspace: Path, monkeypatch: pytest.MonkeyPatch, change: Callable[[Path], None], message: str
) -> None:
    before = _before(workspace)
    change(workspace)
    state, attempts = run_flow(workspace, monkeypatch)
    assert state.is_failed()
    assert state.message == message
    assert attempts == {}  # no task ran
    _assert_nothing_lost(workspace, before, recorded=False)


@pytest.mark.parametrize(
    "url",
    ["nonsense-without-scheme", "sqlite:////nonexistent-dir/lineage.db"],
    ids=["malformed", "missing_directory"],
)
def test_a_ledger_url_that_cannot_be_opened(
    harness: None, workspace: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    before = _before(workspace)
    monkeypatch.setenv("LINEAGE_DB_URL", url)
    state, attempts = run_flow(workspace, monkeypatch)
    assert state.is_failed()
    assert state.message.startswith(f"cannot open the lineage ledger at {url}: ")
    assert "\n" not in state.message
    assert attempts == {}
    _assert_nothing_lost(workspace, before, recorded=False)


def _raw_file(make: Callable[[Path], Path]) -> Callable[[Path], None]:
    def change(ws: Path) -> None:
        source = make(ws / "data/raw")
        set_params(ws, data={"source": str(source.relative_to(ws))})

    return change


# (id, change, failing stage, fragments of its one-line message)
STAGE_REJECTS: list[tuple[str, Callable[[Path], None], str, list[str]]] = [
    (
        "stockcode_with_no_rows",  # shell syntax in a value is data, never run
        lambda ws: set_params(ws, data={"stockcode": "$(touch pwned); touch pwned"}),
        "etl",
        ["etl: error: params.yaml: data.stockcode: '$(touch pwned); touch pwned' has no sales rows in synthetic"],
    ),
    (
        "window_with_no_rows",
        lambda ws: set_params(ws, drift={"current_weeks": 60}),
        "drift_check",
        ["drift_check: error: params.yaml: drift.reference_weeks: no rows in the 12 weeks before "],
    ),
    (
        "missing_drift_reference",
        lambda ws: set_params(ws, drift={"reference": "data/reference/absent.parquet"}),
        "drift_check",
        ["drift_check: error: ", "drift.reference: data/reference/absent.parquet does not exist"],
    ),
] + [
    (f"loader_{make.__name__.strip('_')}", _raw_file(make), "etl", ["etl: error: data/raw/", *fragments])
    for make, fragments in LOADER_CASES
]


@pytest.mark.parametrize(
    ("change", "stage", "fragments"), [c[1:] for c in STAGE_REJECTS], ids=[c[0] for c in STAGE_REJECTS]
)
def test_rejected_by_a_stage(
    harness: None,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Callable[[Path], None],
    stage: str,
    fragments: list[str],
) -> None:
    before = _before(workspace)
    outs_before = locked_outs(workspace)
    change(workspace)
    state, attempts = run_flow(workspace, monkeypatch)
    assert state.is_failed()
    assert "\n" not in state.message
    for fragment in fragments:
        assert fragment in state.message
    assert attempts[stage] == 1  # deterministic: never retried
    assert not (workspace / "pwned").exists()
    assert locked_outs(workspace) == outs_before  # dvc.lock records no output of the failed stage
    _assert_nothing_lost(workspace, before, recorded=True)


@pytest.mark.parametrize("path", ["models/model.pt", "models/preprocessor.joblib"])
def test_a_tracked_file_changed_outside_dvc_is_refused_not_used(
    harness: None, workspace: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    before = _before(workspace)
    recorded = locked_outs(workspace)[path]
    with (workspace / path).open("ab") as handle:
        handle.write(b"tampered")
    tampered = file_md5(workspace / path)
    set_params(workspace, tune={"n_trials": 4})  # work that would load the file, were it allowed
    state, attempts = run_flow(workspace, monkeypatch)
    assert state.is_failed()
    assert state.message == (
        f"{path}: md5 {tampered} differs from {recorded} recorded in dvc.lock (changed outside DVC); "
        f"refusing to overwrite or use it; restore it with `dvc checkout --force {path}`"
    )
    assert attempts["prepare-workspace"] == 1
    assert not {"etl", "tune", "inference"} & set(attempts)
    assert file_md5(workspace / path) == tampered  # left for investigation
    _assert_nothing_lost(workspace, before, recorded=True)


def test_a_raw_input_missing_from_the_remote(harness: None, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = workspace / "data/raw/sales.parquet"
    generate_transactions(20_000, 7, DriftInjection()).to_parquet(raw)
    run(workspace, "dvc", "add", "-q", "data/raw/sales.parquet")
    run(workspace, "dvc", "push", "-q", "data/raw/sales.parquet.dvc")
    md5 = file_md5(raw)
    set_params(workspace, data={"source": "data/raw/sales.parquet"})
    before = _before(workspace)
    # A fresh container: the file is neither in the workspace, nor the cache, nor the remote.
    for copy in (raw, workspace / ".dvc/cache/files/md5" / md5[:2] / md5[2:]):
        copy.unlink()
    (workspace / ".dvc-storage/files/md5" / md5[:2] / md5[2:]).unlink()
    state, attempts = run_flow(workspace, monkeypatch)
    assert state.is_failed()
    assert state.message == (
        f"data/raw/sales.parquet: missing from DVC remote 'local' and from this workspace (md5 {md5}); "
        "push it from a workspace that has it"
    )
    assert attempts["prepare-workspace"] == 1
    assert "etl" not in attempts
    _assert_nothing_lost(workspace, before, recorded=True)


def test_a_missing_output_is_rebuilt_to_the_same_bytes(
    harness: None, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlike a raw input, an output missing everywhere is rebuilt: the stages are deterministic."""
    before = _before(workspace)
    for copy in (
        workspace / "models/model.pt",
        workspace / ".dvc/cache/files/md5" / before.model_md5[:2] / before.model_md5[2:],
        workspace / ".dvc-storage/files/md5" / before.model_md5[:2] / before.model_md5[2:],
    ):
        copy.unlink()
    state, attempts = run_flow(workspace, monkeypatch)
    assert state.is_completed(), state.message
    assert attempts["tune"] == 1
    assert file_md5(workspace / "models/model.pt") == before.model_md5
    _assert_nothing_lost(workspace, before, recorded=True)


@pytest.mark.parametrize("command", [["query", "model-000000000000"], ["reproduce", "model-000000000000"]])
def test_an_unknown_model_version(in_production: Path, command: list[str]) -> None:
    before = _before(in_production)
    done = subprocess.run(
        [str(VENV_BIN / "lineage"), *command], cwd=in_production, env=stage_env(), capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "lineage: error: 'model-000000000000' is no entity id, model version, endpoint or artifact URI in the ledger\n"
    )
    _assert_nothing_lost(in_production, before, recorded=False)
