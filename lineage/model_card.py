"""The model card people write (model_card.yaml, versioned with the code): what the model is for, for whom,
what it must not be used for, its limits, and who answers for it. Every run records the file by md5 and
git blob (lineage/configuration.py), so an evidence pack shows the card its version was trained under.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from lineage.entities import Artifact
from lineage.errors import LineageError

FILE = "model_card.yaml"
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CardError(LineageError):
    """A model card that does not validate; one line naming the file and the key."""


class Provider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Text
    contact: Text


class ModelCard(BaseModel):
    """The card's keys; each answers a part of EU AI Act Annex IV that only people can write."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Text
    provider: Provider
    intended_purpose: Text  # Annex IV 1(a)
    intended_users: list[Text]
    out_of_scope_uses: list[Text]  # foreseeable misuse
    limitations: list[Text]  # Annex IV 3
    human_oversight: Text  # Annex IV 2(e), 3
    performance_metrics: Text  # Annex IV 4: why these metrics fit
    risk_management: Text  # Annex IV 5
    post_market_monitoring: Text  # Annex IV 9


def parse(text: str, where: str = FILE) -> ModelCard:
    """The card in `text`; CardError naming `where` and the first key that is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise CardError(f"{where}: not valid YAML{line}") from None
    if not isinstance(data, dict):
        raise CardError(f"{where}: must be a mapping of keys (model, provider, intended_purpose, ...)")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].lower()
        raise CardError(f"{where}: key '{key}': {problem}") from None


def load(path: Path) -> ModelCard:
    """The card in the file at `path`; CardError naming it and what is wrong."""
    try:
        return parse(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as error:
        raise CardError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise CardError(f"{path}: cannot read it ({error.strerror})") from None


def recorded(artifact: Artifact | None, repository: Path) -> tuple[str | None, str]:
    """The text of the card a run recorded (`artifact`), from git by its blob or from the working tree when
    its md5 still matches; else None. With a note saying where the text came from, or why there is none."""
    if artifact is None:
        return None, "the run recorded no model card (it predates model_card.yaml)"
    blob = artifact.properties.get("git_blob")
    candidates: list[tuple[bytes | None, str]] = []
    if isinstance(blob, str):
        shown = subprocess.run(["git", "cat-file", "-p", blob], cwd=repository, capture_output=True, check=False)
        candidates.append((shown.stdout if shown.returncode == 0 else None, f"git blob {blob}"))
    path = repository / FILE
    candidates.append((path.read_bytes() if path.is_file() else None, f"{FILE} in {repository}"))
    for content, source in candidates:
        if content is not None and hashlib.md5(content).hexdigest() == artifact.md5:
            return content.decode("utf-8"), f"as recorded with the run (md5 {artifact.md5}, from {source})"
    return None, f"the card recorded with the run (md5 {artifact.md5}) is neither in git here nor in {FILE}"
