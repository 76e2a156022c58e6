"""What DVC says of this workspace without running anything: dvc.yaml's stage order and what dvc.lock records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import yaml

LOCK_FILE = Path("dvc.lock")
PARAMS_FILE = Path("params.yaml")


def stage_order(root: Path = Path(".")) -> list[str]:
    """dvc.yaml's stages in DVC's own dependency order (upstream first)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = list(reversed(list(nx.lexicographical_topological_sort(graph, key=lambda s: s.addressing))))
        return [stage.name for stage in order if getattr(stage, "name", None)]


def lock_stages() -> dict[str, Any]:
    """dvc.lock's stages as it records them (none before the first run)."""
    if not LOCK_FILE.is_file():
        return {}
    return dict((yaml.safe_load(LOCK_FILE.read_text(encoding="utf-8")) or {}).get("stages", {}))


def stage_outs(locked: dict[str, Any]) -> dict[str, str]:
    """A locked stage's outputs, path -> md5."""
    return {out["path"]: out["md5"] for out in locked.get("outs", [])}


def locked_outs(stage: str) -> dict[str, str]:
    """A stage's outputs and their md5 as dvc.lock records them."""
    return stage_outs(lock_stages().get(stage, {}))


def locked_deps() -> dict[str, str]:
    """Every dependency dvc.lock records, path -> md5, over all stages."""
    return {dep["path"]: dep["md5"] for stage in lock_stages().values() for dep in stage.get("deps", [])}
