"""Rebuild a model version from its lineage and compare every hash with the recorded one.

1. From the ledger: the run that produced the version, its commit, its params.yaml md5 and the md5 of
   every dep and out of every stage.
2. A temporary git worktree at that commit; params.yaml from the run record in the DVC remote, accepted
   only if its md5 is the recorded one; the DVC-tracked raw inputs pulled from the remote into a fresh
   cache and each checked against its recorded md5 (a missing or altered object is an error naming it).
3. `dvc repro` of the whole pipeline in the worktree, with that commit's code.
4. A table of every artifact: recorded md5, reproduced md5, match. On a mismatch, the first artifact
   that differs (in pipeline order) and the outputs downstream of it, and what differs between the
   recorded numeric platform (CPU, dispatch, library versions) and this one; on a match, which platform
   facts were equal. The reproduction is recorded as an Action; each reproduced output that matches
   gets a SameAs association to the original.

Runs in the repository that holds the commit (the current directory by default), with this
environment's installed packages: the recorded image is named in the report, not pulled.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.redact import redact_text, redact_url
from lineage.entities import (
    Action,
    ActionStatus,
    ActionType,
    Artifact,
    ArtifactType,
    Association,
    AssociationType,
    Context,
    ContextType,
    Entity,
    context_id,
)
from lineage.errors import LineageError
from lineage.query import resolve
from lineage.recorder import artifact_type
from lineage.store import LedgerStore


class ReproduceError(LineageError):
    """Reproduction cannot start or finish; the message is one line naming what is wrong."""


@dataclass(frozen=True, kw_only=True)
class Expected:
    """What the ledger says a model version's run used and made."""

    version: Context
    flow_run_id: str
    commit: str
    params_md5: str
    hashes: dict[str, str]  # path -> md5 of every dep and out of every stage
    originals: dict[str, Artifact]  # path -> the recorded artifact
    platform: dict[str, str] | None  # the recorded numeric platform, if the run recorded one
    image: str = "unknown"  # the image the run ran in (REPOSITORY@sha256:... when pulled by digest)


def image_here() -> str:
    """The image this process runs in, as its deployment names it (the worker image's IMAGE_URI)."""
    return os.environ.get("IMAGE_URI") or "none (this machine's environment)"


# Facts the numeric platform (tasks/__init__.py) makes irrelevant to the bytes: it caps every
# library's dispatch at one level, whatever the CPU offers above it, and runs MKL in its vendor-neutral branch.
_PINNED_AWAY = ("cpu", "cpu_level", "cpu_vendor")
# Where the stages' data work ran (tasks/engine.py): no layout changes a byte (tests/integration/test_etl_layouts.py).
_LAYOUT = ("dask_scheduler", "dask_workers", "dask_worker_versions")


@dataclass(frozen=True)
class PlatformComparison:
    """The recorded numeric platform against this machine's, fact by fact."""

    recorded: dict[str, str] | None
    here: dict[str, str] | None

    @property
    def differences(self) -> dict[str, tuple[str | None, str | None]]:
        if not self.recorded or not self.here:
            return {}
        keys = sorted(set(self.recorded) | set(self.here))
        return {k: (self.recorded.get(k), self.here.get(k)) for k in keys if self.recorded.get(k) != self.here.get(k)}

    @property
    def equal(self) -> list[str]:
        if not self.recorded or not self.here:
            return []
        return sorted(k for k in self.recorded if self.recorded[k] == self.here.get(k))

    def lines(self, ok: bool) -> list[str]:
        """What the report says of the platform: equal facts on a match, differences on a mismatch."""
        if self.recorded is None:
            return ["platform: the run recorded none (recorded before the ledger kept it)"]
        if self.here is None:
            return ["platform: this checkout cannot describe its own (no tasks/numeric_platform.py at that commit)"]
        lines, differences = [], self.differences
        arch = differences.get("architecture")
        if arch:
            built, here = arch
            lines.append(
                f"this machine is {here}, the model was built on {built}: another architecture gives other bytes"
            )
        relevant = {k: v for k, v in differences.items() if k not in (*_PINNED_AWAY, *_LAYOUT)}
        if relevant:
            lines.append(
                "platform differs: " + "; ".join(f"{k} {a} recorded, {b} here" for k, (a, b) in relevant.items())
            )
        pinned = [k for k in differences if k in _PINNED_AWAY]
        if pinned:
            lines.append(f"platform differs in {', '.join(pinned)}, which the numeric platform keeps from the bytes")
        if layout := [k for k in differences if k in _LAYOUT]:
            lines.append(f"the stages ran elsewhere ({', '.join(layout)}), which changes no byte")
        if ok or not relevant:
            lines.append(f"platform equal: {', '.join(self.equal)}")
        return lines


@dataclass(frozen=True)
class Row:
    artifact: str
    recorded: str
    reproduced: str | None

    @property
    def match(self) -> bool:
        return self.recorded == self.reproduced


@dataclass(frozen=True)
class Findings:
    """What explains the rows: where the first difference is and what it reaches, and the platforms."""

    first_difference: str | None  # in pipeline order
    downstream: list[str]  # the outputs downstream of it
    platform: PlatformComparison


@dataclass(frozen=True)
class Report:
    expected: Expected
    rows: list[Row]
    action: Action
    findings: Findings

    @property
    def ok(self) -> bool:
        return all(row.match for row in self.rows)

    def explanation(self) -> list[str]:
        """Which artifacts a mismatch affects, and what differs between the platforms."""
        found, lines = self.findings, []
        if found.first_difference:
            reached = {found.first_difference, *found.downstream}
            lines.append(
                f"first difference: {found.first_difference}; downstream of it: {', '.join(found.downstream) or 'none'}"
            )
            others = [r.artifact for r in self.rows if not r.match and r.artifact not in reached]
            if others:
                lines.append(f"also different, not downstream of it: {', '.join(others)}")
        image = f"image: the run's {self.expected.image}, this reproduction's {image_here()}"
        return [*lines, *found.platform.lines(self.ok), image]

    def as_dict(self) -> dict[str, Any]:
        """The report as `lineage reproduce --format json` prints it."""
        return {
            "model_version": self.expected.version.name,
            "ok": self.ok,
            "artifacts": [
                {"artifact": r.artifact, "recorded": r.recorded, "reproduced": r.reproduced, "match": r.match}
                for r in self.rows
            ],
            "first_difference": self.findings.first_difference,
            "downstream": self.findings.downstream,
            "platform": {
                "recorded": self.findings.platform.recorded,
                "here": self.findings.platform.here,
                "differences": {k: list(v) for k, v in self.findings.platform.differences.items()},
            },
            "image": {"recorded": self.expected.image, "here": image_here()},
            "explanation": self.explanation(),
        }

    def table(self) -> str:
        width = max(len(row.artifact) for row in self.rows)
        lines = [f"{'artifact':<{width}}  {'recorded':<32}  {'reproduced':<32}  match"]
        for row in self.rows:
            lines.append(
                f"{row.artifact:<{width}}  {row.recorded:<32}  {row.reproduced or 'missing':<32}  "
                f"{'yes' if row.match else 'NO'}"
            )
        verdict = "reproduced byte for byte" if self.ok else f"{sum(not r.match for r in self.rows)} mismatch(es)"
        return "\n".join([*lines, f"{self.expected.version.name}: {verdict}", *self.explanation()])


def expected(store: LedgerStore, version_name: str) -> Expected:
    """The recorded run behind a model version (a name, an id or `production`)."""
    found = store.latest([resolve(store, version_name)])
    version = next(iter(found.values()), None)
    if not isinstance(version, Context) or version.context_type != ContextType.MODEL_VERSION:
        raise ReproduceError(f"'{version_name}' is not a model version")
    flow_run_id = str(version.properties.get("flow_run_id", ""))
    run_id = context_id(ContextType.PIPELINE_RUN, flow_run_id)
    run = store.latest([run_id]).get(run_id)
    if not isinstance(run, Context):
        raise ReproduceError(f"{version.name}: its pipeline run {flow_run_id} is not in the ledger")
    ids = [
        a.id
        for a in store.linked([run.id], "destination")[run.id]
        if isinstance(a, Action) and a.action_type == ActionType.STAGE
    ]
    ends = [e for toward in ("destination", "source") for found in store.linked(ids, toward).values() for e in found]
    originals = {a.source_uri: a for a in ends if isinstance(a, Artifact)}
    params = originals.get("params.yaml")
    if params is None:
        raise ReproduceError(f"{version.name}: the ledger holds no params.yaml for run {flow_run_id}")
    hashes = {
        path: artifact.md5
        for path, artifact in originals.items()
        if artifact.artifact_type not in (ArtifactType.IMAGE, ArtifactType.PARAMS, ArtifactType.PLATFORM)
        and path != run.properties.get("git_repository")
    }
    return Expected(
        version=version,
        flow_run_id=flow_run_id,
        commit=str(run.properties.get("git_commit", "unknown")),
        params_md5=params.md5,
        hashes=dict(sorted(hashes.items())),
        originals=originals,
        platform=next(
            (
                {k: str(v) for k, v in a.properties.items()}
                for a in originals.values()
                if a.artifact_type == ArtifactType.PLATFORM
            ),
            None,
        ),
        image=str(run.properties.get("image_uri", "unknown")),
    )


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReproduceError(f"git {' '.join(args)}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return done.stdout.strip()


@contextmanager
def worktree(root: Path, commit: str) -> Iterator[Path]:
    """A temporary detached worktree of `root` at `commit`, removed afterwards."""
    if _git(root, "cat-file", "-t", commit) != "commit":
        raise ReproduceError(f"commit {commit} is not in the repository at {root.resolve()}: fetch it first")
    folder = Path(tempfile.mkdtemp(prefix="reproduce-"))
    path = folder / "worktree"
    _git(root, "worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        _git(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(folder, ignore_errors=True)


def restore(root: Path, tree: Path, want: Expected, remote: str | None) -> None:
    """Point the worktree at `root`'s DVC remote, put back the recorded params.yaml, and pull the raw
    inputs, each object first checked in the remote against its recorded md5."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    with Repo(str(root)) as source:
        name = remote or str(source.config["core"].get("remote", ""))
        if not name:
            raise ReproduceError("no DVC remote configured: name one with --remote")
        target = source.cloud.get_remote(name)
        url = str(target.fs.unstrip_protocol(target.path))
        params = _fetch(
            target, ["runs", want.flow_run_id, "params.yaml"], f"params.yaml of run {want.flow_run_id}", name
        )
        if hashlib.md5(params).hexdigest() != want.params_md5:
            raise ReproduceError(
                f"{redact_url(url)}/runs/{want.flow_run_id}/params.yaml is altered: its md5 is not {want.params_md5}"
            )
        tracked = _git(tree, "ls-files", "*.dvc").split()  # raw inputs added or imported with DVC
        for dvc_file in tracked:
            for out in (yaml.safe_load((tree / dvc_file).read_text(encoding="utf-8")) or {}).get("outs", []):
                path = str(((tree / dvc_file).parent / out["path"]).relative_to(tree))
                md5 = str(out["md5"])
                if md5.endswith(".dir"):
                    continue  # a directory: DVC checks its files as it pulls them
                found = hashlib.md5(_fetch(target, ["files", "md5", md5[:2], md5[2:]], f"{path} (md5 {md5})", name))
                if found.hexdigest() != md5:
                    raise ReproduceError(
                        f"{path}: the remote's object is altered (md5 {found.hexdigest()}, recorded {md5})"
                    )
    (tree / "params.yaml").write_bytes(params)
    with Repo(str(tree)) as repo:
        with repo.config.edit("local") as config:
            config["core"]["remote"] = name
            config["remote"].setdefault(name, {})["url"] = url
        try:
            if tracked:
                repo.pull(targets=tracked, remote=name)
        except DvcException as error:
            restoring = f"cannot restore {', '.join(tracked)} from remote '{name}'"
            raise ReproduceError(f"{restoring}: {redact_text(str(error))}") from error


def _fetch(remote: Any, parts: list[str], what: str, name: str) -> bytes:
    """One object from the DVC remote; its absence is an error naming `what`."""
    path = remote.fs.join(remote.path, *parts)
    try:
        return bytes(remote.fs.cat_file(path))
    except FileNotFoundError:
        raise ReproduceError(f"{what} is missing from remote '{name}'") from None
    except OSError as error:
        raise ReproduceError(f"cannot read {what} from remote '{name}': {redact_text(str(error))}") from error


def rerun(tree: Path) -> None:
    """`dvc repro` of the whole pipeline in the worktree, with the worktree's code."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(Path(bin_dir) / "dvc"), "repro", "--force"], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise ReproduceError(f"dvc repro in the worktree failed: {last[-1] if last else done.returncode}")


def compare(tree: Path, want: Expected) -> list[Row]:
    """Every recorded dep and out against the rebuilt dvc.lock."""
    rebuilt: dict[str, str] = {}
    for stage in _lock_stages(tree):
        for entry in stage.get("deps", []) + stage.get("outs", []):
            rebuilt[entry["path"]] = entry["md5"]
    return [Row(path, md5, rebuilt.get(path)) for path, md5 in want.hashes.items()]


def _lock_stages(tree: Path) -> list[dict[str, Any]]:
    lock = yaml.safe_load((tree / "dvc.lock").read_text(encoding="utf-8")) or {}
    return list((lock.get("stages") or {}).values())  # in dvc.yaml's order, upstream first


def examine(tree: Path, want: Expected, rows: list[Row]) -> Findings:
    """The first artifact that differs, in pipeline order (a stage's deps before its outs), every output
    downstream of it (what that one difference explains), and the recorded platform against this one."""
    platform = PlatformComparison(want.platform, this_platform(tree))
    first, downstream = first_difference(_lock_stages(tree), {row.artifact for row in rows if not row.match})
    return Findings(first, downstream, platform)


def first_difference(stages: list[dict[str, Any]], different: set[str]) -> tuple[str | None, list[str]]:
    """Of the paths in `different`, the first in pipeline order (dvc.lock's stages, a stage's deps before its
    outs), and every output downstream of it, in order; (None, []) when none differs."""
    order = [entry["path"] for stage in stages for entry in stage.get("deps", []) + stage.get("outs", [])]
    first = next((path for path in order if path in different), None)
    if first is None:
        return None, []
    reached, downstream = {first}, []
    for stage in stages:  # outputs of the stages that read it, and of those that read theirs
        if any(entry["path"] in reached for entry in stage.get("deps", [])):
            for out in stage.get("outs", []):
                if out["path"] not in reached:
                    reached.add(out["path"])
                    downstream.append(out["path"])
    return first, downstream


def this_platform(tree: Path) -> dict[str, str] | None:
    """`python -m tasks.numeric_platform` in the worktree: this machine as that commit's stages see it."""
    bin_dir = Path(sys.executable).parent
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", "tasks.numeric_platform"], cwd=tree, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None
    return {k: str(v) for k, v in json.loads(done.stdout).items()}


def record(store: LedgerStore, want: Expected, rows: list[Row], start: dt.datetime, command: str) -> Action:
    """The reproduction as an Action; each matching output SameAs its original."""
    action = Action(
        action_type=ActionType.REPRODUCTION,
        status=ActionStatus.COMPLETED if all(row.match for row in rows) else ActionStatus.FAILED,
        start=start,
        end=dt.datetime.now(dt.UTC),
        command=command,
        parameters={
            "model_version": want.version.name,
            "flow_run_id": want.flow_run_id,
            "commit": want.commit,
            "matched": sum(row.match for row in rows),
            "mismatched": [row.artifact for row in rows if not row.match],
            "image": image_here(),
        },
    )
    entities: list[Entity] = [
        action,
        Association(
            source_id=action.id, destination_id=want.version.id, association_type=AssociationType.ASSOCIATED_WITH
        ),
    ]
    for row in rows:
        if row.reproduced is None:
            continue
        rebuilt = Artifact(
            artifact_type=artifact_type(row.artifact),
            source_uri=f"reproduction/{action.id}/{row.artifact}",
            md5=row.reproduced,
        )
        entities += [
            rebuilt,
            Association(source_id=action.id, destination_id=rebuilt.id, association_type=AssociationType.PRODUCED),
        ]
        if row.match:
            entities.append(
                Association(
                    source_id=rebuilt.id,
                    destination_id=want.originals[row.artifact].id,
                    association_type=AssociationType.SAME_AS,
                )
            )
    store.append(entities)
    return action


def reproduce(store: LedgerStore, version_name: str, root: Path = Path("."), remote: str | None = None) -> Report:
    """Rebuild `version_name` in a worktree and record how it compares."""
    start = dt.datetime.now(dt.UTC)
    want = expected(store, version_name)
    with worktree(root, want.commit) as tree:
        restore(root, tree, want, remote)
        rerun(tree)
        rows = compare(tree, want)
        findings = examine(tree, want, rows)
    action = record(store, want, rows, start, f"lineage reproduce {want.version.name}")
    return Report(want, rows, action, findings)
