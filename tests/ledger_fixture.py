"""The committed old ledger (tests/fixtures/ledger_v1/): a ledger as the code of commit bfa1c65 wrote it (format 1),
which every later version of the code must still read and verify (tests/unit/test_ledger_format.py).

`python -m tests.ledger_fixture` rewrites it with the code checked out, so run it only from that commit (e.g. in a
`git worktree add /tmp/old bfa1c65`), never to "fix" a failing test: the point of the file is that it is old.

What it holds: the authority of a deployed ledger (alice's `lineage init`, four eyes, bob, carol and the pipeline's
key), two pipeline runs signed by the pipeline (week 1 promoted, week 2 rejected by fairness), an override of week 2
requested by alice and approved by bob, a rollback to week 1, a bundle of another ledger's run imported
(its signer trusted by alice and bob) and an endpoint update. `anchor.json` is the head when it was written: the
published anchor its verification checks. Private keys are made in a temporary folder and thrown away.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "ledger_v1"
NAMES = ("alice", "bob", "carol", "lineage-pipeline")


def _keys(folder: Path) -> dict[str, Path]:
    for name in NAMES:
        command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(folder / name)]
        subprocess.run(command, check=True)
    return {name: folder / name for name in NAMES}


def write(target: Path = FIXTURE) -> None:
    """Write the fixture ledger (ledger.db) and its anchor (anchor.json) into `target`."""
    from lineage import registry
    from lineage.authority import PIPELINE, approver_record, confirm, propose, register
    from lineage.bundle import export_bundle, import_bundle
    from lineage.objects import Objects
    from lineage.predictions import endpoint_update
    from lineage.signatures import Signer, read_public_key
    from lineage.store import LedgerStore
    from tests.bundle_world import dvc_repository, record_weeks
    from tests.conftest import deploy, pipeline_runs

    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        (tmp / "keys").mkdir()
        keys = _keys(tmp / "keys")
        alice, bob = Signer("alice", keys["alice"]), Signer("bob", keys["bob"])
        pipeline = Signer(PIPELINE, keys[PIPELINE])

        # Another ledger (dev) with one promoted run, its files in a DVC remote both sides read.
        dev = LedgerStore(f"sqlite:///{tmp / 'dev.db'}")
        register(dev, "alice", read_public_key(keys["alice"].with_suffix(".pub")), alice)
        register(dev, PIPELINE, read_public_key(keys[PIPELINE].with_suffix(".pub")), alice)
        (tmp / "dev").mkdir()
        [(dev_version, _)] = record_weeks(dev, tmp / "dev", tmp / "remote", pipeline, True, first=4)

        store = LedgerStore(f"sqlite:///{tmp / 'ledger.db'}")
        deploy(store, keys)
        (tmp / "prod").mkdir()
        week1, week2 = pipeline_runs(store, tmp / "prod", pipeline, [(1, True), (2, False)])
        registry.promote(store, week2, alice, "an exception for the fixture", override=True)
        registry.approve(store, week2, bob, "second approver for the fixture")
        registry.rollback(store, alice, "back to the version before the override")

        ledger_id = store.ledger_id()
        assert ledger_id is not None
        trusted = approver_record("dev-alice", read_public_key(keys["alice"].with_suffix(".pub")), "alice", ledger_id)
        _, proposed = propose(store, trusted, alice)
        assert proposed is not None
        done, _ = confirm(store, proposed, bob)
        assert done is not None
        bundle = tmp / "bundle.json"
        export_bundle(dev, dev_version, bundle, alice)
        import_bundle(store, bundle, Objects(dvc_repository(tmp / "repository", tmp / "remote")))

        at = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)
        served = registry.get_version(store, week1)
        store.append(endpoint_update(store, "retail-demand", served, at, {"host": "web-1", "image": "local"}))
        head = store.head()
        dev.close()
        store.close()
        with sqlite3.connect(tmp / "ledger.db") as db:
            db.execute("VACUUM")  # smaller, same rows

        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / "ledger.db", target / "ledger.db")
        anchor = {"record_count": head.count, "head_hash": head.head_hash, "versions": [week1, week2]}
        (target / "anchor.json").write_text(json.dumps(anchor, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target / 'ledger.db'}: {head.count} records, head {head.head_hash}")


if __name__ == "__main__":
    write()
