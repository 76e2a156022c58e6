"""A dev ledger whose files exist, for the bundle tests and benchmark: tests/lineage_workspace.py's stand-in
workspace with every data, model and report md5 in its dvc.lock replaced by the md5 of real bytes, which are stored
in a folder laid out as a DVC remote (files/md5/xx/...). A DVC repository whose default remote is that
folder is the importing side's storage."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path

import yaml

from lineage.entities import ActionStatus
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.signatures import Signer
from lineage.store import LedgerStore
from tests.lineage_workspace import STAGES, write_workspace

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


def object_path(storage: Path, md5: str) -> Path:
    return storage / "files" / "md5" / md5[:2] / md5[2:]


def store_object(storage: Path, data: bytes, suffix: str = "") -> str:
    """Keep `data` in the DVC layout under `storage`; its md5 (with `suffix`, e.g. `.dir`)."""
    md5 = hashlib.md5(data).hexdigest() + suffix
    path = object_path(storage, md5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return md5


def real_workspace(root: Path, week: int, storage: Path, fair: bool = True) -> None:
    """Week `week`'s workspace, its files' bytes in `storage` and their md5s in dvc.lock."""
    write_workspace(root, week, fair=fair)
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    real: dict[str, str] = {}  # the stand-in md5 -> the md5 of bytes made for it
    for stage in lock["stages"].values():
        for entry in [*stage.get("deps", []), *stage.get("outs", [])]:
            path, md5 = entry["path"], entry["md5"]
            if path.endswith(".py"):
                continue
            if path.startswith("metrics/"):
                store_object(storage, (root / path).read_bytes())
                continue
            if md5 not in real:
                if md5.endswith(".dir"):
                    part = store_object(storage, f"{path} {md5} part 0\n".encode())
                    listing = json.dumps([{"md5": part, "relpath": "part-0.csv"}]).encode()
                    real[md5] = store_object(storage, listing, ".dir")
                else:
                    real[md5] = store_object(storage, f"{path} {md5}\n".encode())
            entry["md5"] = real[md5]
    (root / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False), encoding="utf-8")


def record_weeks(
    store: LedgerStore, root: Path, storage: Path, signer: Signer | None, *fair: bool, first: int = 1
) -> list[tuple[str, str]]:
    """Record one run per entry of `fair` (True: both gates pass, the version is promoted), from week
    `first` on; each run's model version and flow run id."""
    recorded = []
    for week, passed in enumerate(fair, start=first):
        real_workspace(root, week, storage, passed)
        stages = [StageRun(s, ActionStatus.COMPLETED, NOW, NOW, str(uuid.uuid4())) for s in STAGES]
        info = RunInfo(str(uuid.uuid4()), stages, NOW, NOW, None if passed else "fairness check failed", "runs/x")
        version = record_run(store, info, root, signer).model_version
        assert version is not None
        recorded.append((version.name, info.flow_run_id))
    return recorded


def dvc_repository(folder: Path, remote: Path) -> Path:
    """A DVC repository (no git) at `folder` whose default remote `prod` is the folder `remote`: the
    config `dvc init --no-scm` and `dvc remote add -d prod REMOTE` write, without two DVC start-ups."""
    (folder / ".dvc").mkdir(parents=True)
    config = f"[core]\n    no_scm = True\n    remote = prod\n['remote \"prod\"']\n    url = {remote}\n"
    (folder / ".dvc" / "config").write_text(config, encoding="utf-8")
    return folder
