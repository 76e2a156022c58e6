"""The console's page templates and links, shared by the console (lineage/console/app.py) and evidence
documents (lineage/evidence.py): one place, so that neither imports the other."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import ChainableUndefined, Environment, FileSystemLoader

HERE = Path(__file__).parent
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Links:
    """The console's URLs; a page links what it names. `prefect_ui` (PREFECT_UI_URL) adds Prefect's run pages."""

    prefect_ui: str | None = None

    def version(self, name: str | None) -> str | None:
        return f"/models/{quote(name, safe='')}" if name else None

    def run(self, flow_run_id: str | None) -> str | None:
        return f"/runs/{quote(flow_run_id, safe='')}" if flow_run_id else None

    def artifact(self, artifact_id: str) -> str | None:
        return f"/artifacts/{quote(artifact_id, safe='')}"

    def content(self, artifact_id: str) -> str | None:
        return f"/artifacts/{quote(artifact_id, safe='')}/content"

    def prefect_run(self, flow_run_id: str) -> str | None:
        return (
            f"{self.prefect_ui.rstrip('/')}/runs/flow-run/{flow_run_id}"
            if self.prefect_ui and _UUID.fullmatch(flow_run_id)
            else None
        )

    def task_run(self, task_run_id: str) -> str | None:
        return (
            f"{self.prefect_ui.rstrip('/')}/runs/task-run/{task_run_id}"
            if self.prefect_ui and _UUID.fullmatch(task_run_id)
            else None
        )

    def vertex(self, vertex: dict[str, Any]) -> str | None:
        """A graph vertex's page: an artifact's own, a version's or run's, and an action's run or version."""
        details = vertex["details"]
        if vertex["kind"] == "artifact":
            return self.artifact(vertex["id"])
        if vertex["type"] == "ModelVersion":
            return self.version(vertex["label"])
        if vertex["type"] == "PipelineRun":
            return self.run(vertex["label"])
        if vertex["kind"] == "action":
            version = (details.get("parameters") or {}).get("model_version")
            if vertex["type"] in ("Promotion", "Reproduction") and version:
                return f"{self.version(version)}#{'decisions' if vertex['type'] == 'Promotion' else 'reproductions'}"
            return self.run((details.get("metadata") or {}).get("generated_by"))
        return None


def when(value: Any) -> str:
    """An ISO time as people read it, in UTC."""
    return str(value).replace("T", " ")[:19] if value else ""


def num(value: Any) -> str:
    """Integers with separators, floats to 4 significant digits (what the gates judge, not the last bits)."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def short(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def diff_summary(diff: dict[str, Any]) -> str:
    """What changed, in one line: how many of each kind."""
    counts = {
        "commits": len(diff["commits"].get("log") or []),
        "params": len(diff["params"]),
        "artifacts": sum(len(rows) for rows in diff["artifacts"].values()),
        "metrics": len(diff["metrics"]),
        "configuration keys": len(diff["configuration"]),
    }
    said = [f"{n} {what[:-1] if n == 1 and what.endswith('s') else what}" for what, n in counts.items() if n]
    return ", ".join(said) + " changed" if said else "nothing changed"


def epochs_by_trial(epochs: list[dict[str, Any]] | None) -> dict[int, list[float]]:
    grouped: dict[int, list[float]] = defaultdict(list)
    for row in epochs or []:
        grouped[int(row["trial"])].append(float(row["val_loss"]))
    return dict(grouped)


def environment() -> Environment:
    """The templates, shared with evidence documents: every value escaped."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=ChainableUndefined)
    env.filters |= {
        "when": when,
        "num": num,
        "short": short,
        "diff_summary": diff_summary,
        "epochs_by_trial": epochs_by_trial,
    }
    return env
