"""`lineage evidence VERSION --output DIR`: one self-contained evidence pack per model version, for the
people who file it (EU AI Act Annex IV technical documentation, Art. 12 record-keeping, SR 11-7's
validation record).

The pack holds:
- evidence.html: the document (inline styles, images, graph and chart; no scripts, no network) and
  evidence.pdf, the same document printed by headless Chromium (lineage/chromium.py);
- record.json: the version as the console's JSON twin holds it (ascendants, decisions, verdicts, diff...);
- openlineage.jsonl: the OpenLineage RunEvents of the run that trained it;
- verification.json: the chain and signature verification, and the published anchors it was checked against;
- model_card.yaml (the card recorded with the run) and reports/ (the stored reports of the gates and the SHAP plots,
  each checked against its md5);
- MANIFEST.sha256: the sha256 of every other file, in `sha256sum -c` format.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markupsafe import Markup

from common.files import TargetError, atomic_folder
from lineage import chromium, views
from lineage.console.charts import tuning_chart
from lineage.console.graph import to_dot
from lineage.console.templates import Links, environment
from lineage.entities import Artifact
from lineage.errors import LineageError
from lineage.model_card import FILE as CARD_FILE
from lineage.model_card import CardError, parse, recorded
from lineage.objects import ObjectError, Objects
from lineage.store import Head, LedgerStore
from lineage.verification import verify

MANIFEST = "MANIFEST.sha256"
CSS = Path(__file__).parent / "console" / "static" / "console.css"


class EvidenceError(LineageError):
    """A pack that cannot be built: the folder, the model card, Chromium; one line."""


@dataclass(frozen=True)
class Pack:
    folder: Path
    name: str  # the model version
    files: list[str]  # relative paths, MANIFEST.sha256 last
    verified: bool  # the chain, signatures and published anchors held


@dataclass(frozen=True)
class _Links(Links):
    """Links inside the pack: to the stored reports it carries, and to nothing outside the document."""

    included: dict[str, str] = field(default_factory=dict)  # artifact id -> its path in the pack

    def content(self, artifact_id: str) -> str | None:
        return self.included.get(artifact_id)

    def version(self, name: str | None) -> str | None:
        return None

    def run(self, flow_run_id: str | None) -> str | None:
        return None

    def artifact(self, artifact_id: str) -> str | None:
        return None


def verification(store: LedgerStore, objects: Objects | None, v: dict[str, Any], full: bool) -> dict[str, Any]:
    """What `lineage verify` checks (lineage/verification.py; every record with `full`), and the ledger head
    published beside the version's run. Nothing is logged."""
    verified = verify(store, full, None, objects)
    own = None
    stored = objects.run_record(v["run"]["flow_run_id"], "ledger-head.json") if objects else None
    if stored is not None:
        head = json.loads(stored)
        failed = store.check_anchor(Head(int(head["record_count"]), str(head["head_hash"])))
        own = {**head, "holds": failed is None, "detail": str(failed) if failed else "holds"}
    return {
        "ok": verified.ok and (own is None or own["holds"]),
        "chain": str(verified.chain),
        "record_count": verified.chain.count,
        "head_hash": verified.chain.head_hash,
        "scope": verified.scope().replace("--full", "`lineage evidence --full`"),
        "signatures": str(verified.decisions) if verified.decisions else "not checked: the chain failed",
        "problems": verified.problems,
        "latest_anchor": verified.anchor,
        "version_run_anchor": own,
        "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _card(store: LedgerStore, v: dict[str, Any], repository: Path) -> tuple[str | None, Any, str]:
    run = views.run_view(store, v["run"]["flow_run_id"])
    entry = next((c for c in run["configuration"] if c["path"] == CARD_FILE), None)
    artifact = store.get(entry["artifact"]) if entry else None
    text, note = recorded(artifact if isinstance(artifact, Artifact) else None, repository)
    if text is None:
        return None, None, note
    try:
        return text, parse(text, f"{CARD_FILE} ({note})"), note
    except CardError as error:
        raise EvidenceError(str(error)) from None


def _write(folder: Path, relative: str, data: bytes) -> None:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build(
    store: LedgerStore,
    name: str,
    output: Path,
    objects: Objects | None,
    repository: Path = Path("."),
    full: bool = False,
) -> Pack:
    """Write the evidence pack of model version `name` (or `production`) into the new folder `output`: built
    beside it and renamed into place when whole, so a failure leaves nothing behind."""
    if not output.absolute().parent.is_dir():
        raise EvidenceError(f"{output}: its parent folder does not exist")
    try:
        with atomic_folder(output) as scratch:
            chromium.find()  # before any work: the document cannot be made without it
            pack = _build(store, name, scratch, objects, repository, full)
    except TargetError as error:
        raise EvidenceError(f"{error}: a pack is written into a new one") from None
    except chromium.ChromiumError as error:
        raise EvidenceError(f"the evidence document needs headless Chromium: {error}") from None
    return dataclasses.replace(pack, folder=output)


def _build(store: LedgerStore, name: str, output: Path, objects: Objects | None, repository: Path, full: bool) -> Pack:
    from lineage import openlineage  # slow to import: only here

    v = views.version_view(store, name, objects, repository)
    version = v["version"]["name"]
    card_text, card, card_note = _card(store, v, repository)
    events = openlineage.to_json_lines(openlineage.run_events(store, v["run"]["flow_run_id"]))
    checked = verification(store, objects, v, full)

    included: dict[str, str] = {}  # artifact id -> its path in the pack
    images: dict[str, str] = {}
    for shown in [*(report for gate in v["verdicts"] for report in gate["reports"]), *v["shap"]["plots"]]:
        artifact = store.get(shown["artifact"])
        try:
            data = objects.read(artifact.md5) if objects and isinstance(artifact, Artifact) else None
        except ObjectError as error:
            raise EvidenceError(str(error)) from None
        if data is None:
            continue  # the document says the file is not available
        _write(output, shown["path"], data)
        included[shown["artifact"]] = shown["path"]
        if shown["path"].endswith(".png"):
            images[shown["artifact"]] = "data:image/png;base64," + base64.b64encode(data).decode()

    links = _Links(included=included)
    chart = tuning_chart(v["tuning"], version)
    try:
        with chromium.page() as tab:
            dot = to_dot(v["lineage"], False, lambda _vertex: None, run=v["run"]["flow_run_id"])
            graph = chromium.draw(tab, dot)
            html = environment().get_template("evidence.html").render(
                v=v, link=links, css=Markup(CSS.read_text(encoding="utf-8")),
                graph=Markup(_svg_element(graph)),
                chart=Markup(_svg_element(chart.decode())) if chart else None,
                image=lambda plot: images.get(plot["artifact"]), card=card, card_note=card_note,
                verification=checked, generated=checked["checked_at"], manifest=MANIFEST,
            )  # fmt: skip
            _write(output, "evidence.html", html.encode("utf-8"))
            tab.open((output / "evidence.html").resolve().as_uri())
            _write(output, "evidence.pdf", tab.pdf())
    except chromium.ChromiumError as error:
        raise EvidenceError(f"the evidence document needs headless Chromium: {error}") from None

    _write(output, "record.json", (json.dumps(v, indent=2, sort_keys=True) + "\n").encode())
    _write(output, "openlineage.jsonl", events.encode())
    _write(output, "verification.json", (json.dumps(checked, indent=2, sort_keys=True) + "\n").encode())
    if card_text is not None:
        _write(output, CARD_FILE, card_text.encode("utf-8"))
    files = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    lines = [f"{hashlib.sha256((output / f).read_bytes()).hexdigest()}  {f}\n" for f in files]
    _write(output, MANIFEST, "".join(lines).encode())
    return Pack(output, version, [*files, MANIFEST], bool(checked["ok"]))


def _svg_element(svg: str) -> str:
    """An SVG document as an element to inline in HTML: without its XML declaration and doctype."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg
