"""The pipeline's own configuration, per run: what AWS Config would track for a pipeline's resources.

Two sources, both recorded as Configuration artifacts that ContributedTo the run:
- the files that define the pipeline and its environment (dvc.yaml, prefect.yaml, the worker's
  Dockerfile, the lock files, .dvc/config, the model card), each by md5 and git blob id, which
  `git cat-file -p` turns back into the content; .dvc/config's settings are also kept key by key;
- the deployment as the Prefect server held it when the run started (flows/configuration.py reads it).
Values whose key names a secret are masked, and every other value's credentials too (common.redact: a URL's
password and secret query parameters, a secret `key=value`), before anything is recorded. `snapshot`
flattens both into one key -> value map, which the Deployment context keeps, so the next run of that
deployment finds what to compare with in one lookup; `changes` lists what differs.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from common.redact import MASK, redact_text, secret_key
from lineage.entities import Artifact, ArtifactType, PropertyValue

CONFIGURATION_FILES = (
    "dvc.yaml", "prefect.yaml", "docker/worker.Dockerfile", ".dvc/config", "requirements/*.lock", "model_card.yaml",
)  # fmt: skip
DEPLOYMENT_URI = "prefect-deployment/"  # + the deployment's name: its artifact's source URI


def mask(value: Any, key: str = "") -> Any:
    """`value` with every entry whose key names a secret replaced by ***, and credentials masked in text."""
    if isinstance(value, dict):
        return {name: mask(item, str(name)) for name, item in value.items()}
    if isinstance(value, list):
        return [mask(item, key) for item in value]
    if secret_key(key) and value not in (None, "", {}, []):
        return MASK
    return redact_text(value) if isinstance(value, str) else value


def flatten(value: Any, prefix: str = "") -> dict[str, PropertyValue]:
    """Nested mappings as dotted keys; lists become canonical JSON text; None is left out."""
    if isinstance(value, dict):
        flat: dict[str, PropertyValue] = {}
        for key, item in value.items():
            flat |= flatten(item, f"{prefix}{key}.")
        return flat
    key = prefix.rstrip(".")
    if isinstance(value, list):
        return {key: json.dumps(value, sort_keys=True)}
    if isinstance(value, float) and value != value:  # NaN has no JSON form
        return {key: "NaN"}
    return {} if value is None else {key: value}


def unflatten(flat: dict[str, PropertyValue]) -> dict[str, Any]:
    """`flatten` undone, for a metrics file the ledger holds as properties: dotted keys nested again, and
    the JSON text a list became read back as that list."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = json.loads(value) if isinstance(value, str) and value.startswith("[") else value
    return nested


def metrics_file(artifact: Artifact) -> dict[str, Any]:
    """A metrics file as its stage wrote it, from the flattened properties its artifact holds (DVC's `nfiles`
    aside)."""
    return unflatten({k: v for k, v in artifact.properties.items() if k != "nfiles"})


def configuration_files(root: Path) -> list[Path]:
    """The configuration files present under `root`, in a fixed order."""
    found: list[Path] = []
    for pattern in CONFIGURATION_FILES:
        found += sorted(path for path in root.glob(pattern) if path.is_file())
    return found


def _git_blobs(root: Path, paths: list[Path]) -> list[str | None]:
    try:
        done = subprocess.run(
            ["git", "hash-object", "--", *map(str, paths)], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return [None] * len(paths)
    return list(done.stdout.split())


def _dvc_settings(text: str) -> dict[str, PropertyValue]:
    """.dvc/config key by key (`remote.s3.url`), secrets masked; {} if it does not parse."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return {}
    settings: dict[str, PropertyValue] = {}
    for section in parser.sections():
        name = re.sub(r'\s*"([^"]*)"', r".\1", section)
        for option, value in parser.items(section):
            settings[f"{name}.{option}"] = mask(value, option)
    return settings


def file_artifacts(root: Path) -> list[Artifact]:
    """One Configuration artifact per configuration file: md5, size, git blob id (and .dvc/config's settings)."""
    paths = configuration_files(root)
    artifacts = []
    for path, blob in zip(paths, _git_blobs(root, paths), strict=True):
        content = path.read_bytes()
        relative = path.relative_to(root).as_posix()
        properties: dict[str, PropertyValue] = {"git_blob": blob} if blob else {}
        if relative == ".dvc/config":
            properties |= _dvc_settings(content.decode("utf-8", errors="replace"))
        artifacts.append(
            Artifact(
                artifact_type=ArtifactType.CONFIGURATION,
                source_uri=relative,
                md5=hashlib.md5(content).hexdigest(),
                size=len(content),
                properties=properties,
            )
        )
    return artifacts


def deployment_artifact(name: str, configuration: dict[str, Any]) -> Artifact:
    """The deployment as the server held it (already masked by the reader; masked again here)."""
    masked = mask(configuration)
    return Artifact(
        artifact_type=ArtifactType.CONFIGURATION,
        source_uri=f"{DEPLOYMENT_URI}{name}",
        md5=hashlib.md5(json.dumps(masked, sort_keys=True).encode()).hexdigest(),
        properties=flatten(masked),
    )


def snapshot(artifacts: list[Artifact]) -> dict[str, PropertyValue]:
    """One map of what the run was configured with: each file's md5 (`file:<path>`), .dvc/config's
    settings (`dvc:<key>`) and the deployment's fields (`deployment:<key>`)."""
    flat: dict[str, PropertyValue] = {}
    for artifact in artifacts:
        if artifact.source_uri.startswith(DEPLOYMENT_URI):
            flat |= {f"deployment:{key}": value for key, value in artifact.properties.items()}
            continue
        flat[f"file:{artifact.source_uri}"] = artifact.md5
        if artifact.source_uri == ".dvc/config":
            flat |= {f"dvc:{key}": value for key, value in artifact.properties.items() if key != "git_blob"}
    return flat


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Every key whose value differs, in key order, with its value before and after (None: absent)."""
    return [
        {"key": key, "before": before.get(key), "after": after.get(key)}
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]
