"""Bundles: one model version's lineage carried from one ledger to another (dev to prod), signed.

A bundle holds a version's ascendants (`query_lineage`: its run, stages, data, code, params, image,
platform, gates and decisions), every output of the stages among them (so `lineage reproduce` compares
every file on either side), and the Approver records of whoever signed its decisions or the bundle.
Each entity comes with all its ledger records exactly as stored (seq, kind, ..., body, prev_hash,
record_hash), beside the ledger's first record (the ledger's id is that record's hash: fixed at genesis)
and its head. An approver of the ledger signs an **attestation** (canonical JSON: `attests`, the ledger id,
head count and hash, the version, `approvers`: the OpenSSH public key of each Approver record carried, and
`decisions`: the sha256 of each decision's body as its ledger holds it), then the bundle's canonical JSON
without its signature, attestation included (`ssh-keygen -Y sign`, as decisions are signed). The
importing ledger keeps the attestation in its Import action: it is what `lineage verify` checks there
(lineage/signatures.py). The file is the same bytes for the same ledger state.

`import_bundle` refuses, in one line and appending nothing, a bundle whose records do not hash to their
record_hash, whose signature does not check or whose key is not an active approver's key in the
importing ledger (that registration is how prod trusts dev), whose attestation is not signed by that key
or disagrees with its records, whose signed decisions do not check against the bundle's own Approver
records, one of whose stages' outputs (data, models, reports, metrics) is missing from the importing
side's DVC storage, or one of whose files found there does not hash to its md5 (an input no stage made,
such as data/raw kept in git, may be absent: DVC hashes it but does not store it). Otherwise it
appends, in one transaction, only what the ledger does not hold yet (so a second import adds nothing, a
newer bundle only its news, and an older bundle than one imported before only entities still absent,
never an older state):

1. Artifacts (content-addressed), Actions (uuids), PipelineRun contexts (named by globally unique flow
   run ids) and the edges between them keep their ids: they are the same entities in both ledgers.
2. ModelVersion, Deployment, Endpoint and Approver contexts mean something in each ledger (a dev
   `production` is not prod's): they are recorded as `<name>@<ledger id[:12]>` with the properties
   `imported_from` (the ledger id) and `origin_name`, edges remapped, and grant no rights here. One is
   SameAs the local context that is the same thing: the ModelVersion of the same model md5, the Approver
   with the same name and key. A Deployment or an Endpoint is a place in its environment, never the same.
3. The version becomes promotable: without a local ModelVersion of its name, a `candidate` is created
   with its model_md5, flow_run_id and gate verdicts and `trained_in` (the ledger id); the model, the run
   and its gates are tied to it as a local run's are, and it is SameAs the imported record.
4. An Import action (source ledger, head, version, bundle sha256, signer, counts, the decisions it
   brought, the attestation and its signature) ContributedTo the local version: the version's lineage
   says where it came from.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from common.files import TargetError, output_target, write_atomic
from gates.table import BY_ACTION_TYPE, PROPERTIES
from lineage import ledger_format
from lineage.authority import ACTIVE, PIPELINE, approver, current
from lineage.bounded import Refused, read_limited
from lineage.entities import (
    IMPORTED_FROM,
    ORIGIN_NAME,
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
    ModelStatus,
    context_id,
)
from lineage.errors import LineageError
from lineage.objects import AlteredObject, ObjectError, Objects
from lineage.query import Direction, query_lineage, resolve
from lineage.signatures import (
    ATTESTS,
    NAMESPACE,
    SIGNATURE,
    UNSIGNED,
    SignatureError,
    Signer,
    attestation_payload,
    body_sha256,
    decision_problem,
    public_key,
    record_signature_problem,
)
from lineage.store import (
    GENESIS,
    Head,
    Kind,
    LedgerError,
    LedgerRecord,
    LedgerStore,
    along_chain,
    canonical_json,
    record_columns,
    record_hash,
)

if TYPE_CHECKING:
    from sshsig.ssh_public_key import PublicKey

FORMAT = "lineage-bundle"
FORMAT_VERSION = 1
# A bundle is one version's records, about a megabyte; a larger file is refused before it is parsed, so
# a wrong file (a disk image, /dev/zero) costs no more than this in memory. read_bundle takes another.
MAX_BUNDLE_BYTES = 64 * 2**20
# Artifacts whose md5 names bytes in DVC's storage; code, image, params, platform and configuration
# artifacts are hashes of other things (a commit, an image digest, facts).
FILE_TYPES = {ArtifactType.DATASET, ArtifactType.MODEL, ArtifactType.PREPROCESSOR, ArtifactType.REPORT,
              ArtifactType.METRICS}  # fmt: skip
QUALIFIED = {ContextType.MODEL_VERSION, ContextType.DEPLOYMENT, ContextType.ENDPOINT, ContextType.APPROVER}
_EVERY_HOP = 1_000_000  # a walk ends where nothing new is reached, long before this


class BundleError(LineageError):
    """A bundle that cannot be written, read, trusted or imported; the message is one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleRecord(_Strict):
    """One ledger record, its columns as stored."""

    seq: StrictInt = Field(ge=1)
    kind: StrictStr
    entity_id: StrictStr
    entity_type: StrictStr
    name: StrictStr | None
    source_id: StrictStr | None
    destination_id: StrictStr | None
    body: StrictStr
    prev_hash: StrictStr
    record_hash: StrictStr

    def columns(self) -> LedgerRecord:
        return LedgerRecord(**self.model_dump())


class Source(_Strict):
    """The ledger the records come from: its id (its first record's hash), that record, and its head."""

    ledger_id: StrictStr = Field(pattern=r"^[0-9a-f]{64}$")
    genesis: BundleRecord
    head_count: StrictInt = Field(ge=1)
    head_hash: StrictStr


class BundleSigner(_Strict):
    name: StrictStr
    public_key: StrictStr
    fingerprint: StrictStr


class Bundle(_Strict):
    format: Literal["lineage-bundle"]
    format_version: Literal[1]
    version: StrictStr  # the model version's name in its ledger
    version_id: StrictStr
    source: Source
    records: list[BundleRecord]
    signer: BundleSigner | None = None
    attestation: dict[StrictStr, Any] | None = None  # checked against the records by `check_attestation`
    attestation_signature: StrictStr | None = None
    signature: StrictStr | None = None


# -- export ------------------------------------------------------------------------------------------


def ledger_id(store: LedgerStore) -> str:
    """The ledger's id: the hash of its first record (fixed at genesis, the same wherever it is copied)."""
    first = next(store.records(upto=1), None)
    if first is None:
        raise BundleError("the ledger is empty: it has no id yet")
    return first.record_hash


def _row(record: LedgerRecord) -> dict[str, Any]:
    return record._asdict()


def collect(store: LedgerStore, version: str) -> tuple[Context, set[str]]:
    """The model version `version` names and the ids of every entity and edge its bundle carries."""
    version_id = resolve(store, version)
    found = store.get(version_id)
    if not isinstance(found, Context) or found.context_type != ContextType.MODEL_VERSION:
        raise BundleError(f"'{version}' is not a model version")
    graph = query_lineage(store, version_id, Direction.ASCENDANTS, _EVERY_HOP)
    entities = store.latest(vertex.id for vertex in graph.vertices)
    edges = list(graph.edges)
    stages = [e.id for e in entities.values() if isinstance(e, Action) and e.action_type == ActionType.STAGE]
    outputs = store.edges(stages, toward="source")  # what the stages produced, beyond what fed the version
    edges += outputs
    entities |= store.latest(edge.destination_id for edge in outputs)
    signers = {
        str(entity.parameters.get("signed_by"))
        for entity in entities.values()
        if isinstance(entity, Action) and entity.parameters.get(SIGNATURE) not in (None, UNSIGNED)
    }
    for name in sorted(signers):
        registered = approver(store, name)
        if registered is not None:
            entities[registered.id] = registered
    # A bundle carries its own ledger's records: what this ledger imported from a third is left out.
    foreign = {i for i, e in entities.items() if isinstance(e, Context) and IMPORTED_FROM in e.properties}
    edges = [e for e in edges if e.source_id not in foreign and e.destination_id not in foreign]
    # The ledger's format declarations go too: the importing side reads each record in the format they say.
    formats = context_id(ContextType.LEDGER_FORMAT, ledger_format.NAME)
    return found, (set(entities) - foreign) | {edge.id for edge in edges} | {formats}


def attestation(source: dict[str, Any], version: str, records: list[LedgerRecord]) -> dict[str, Any]:
    """What the bundle's signer vouches for, for the importing ledger to check on its own: the source
    ledger, its head and the version; each carried Approver record's key and each decision's body hash
    (every entity's latest record among `records`, in seq order)."""
    keys: dict[str, str] = {}
    decisions: dict[str, str] = {}
    for record in records:
        if record.kind == Kind.CONTEXT.value and record.entity_type == ContextType.APPROVER.value:
            keys[str(record.name)] = str(json.loads(record.body)["properties"].get("public_key"))
        elif record.kind == Kind.ACTION.value and record.entity_type == ActionType.PROMOTION.value:
            decisions[record.entity_id] = body_sha256(record.body)
    return {
        "attests": ATTESTS,
        "ledger_id": source["ledger_id"],
        "head_count": source["head_count"],
        "head_hash": source["head_hash"],
        "version": version,
        "approvers": keys,
        "decisions": decisions,
    }


def build_bundle(store: LedgerStore, version: str, signer: Signer | None = None) -> dict[str, Any]:
    """The bundle of `version` as a JSON-ready dict, signed by `signer` (an active approver of this ledger)."""
    head = store.head()
    found, ids = collect(store, version)
    if signer is not None:
        registered = approver(store, signer.principal)
        if registered is None or registered.properties.get("status") != ACTIVE:
            raise BundleError(f"{signer.principal!r} is not an active approver of this ledger")
        ids.add(registered.id)
    genesis = next(store.records(upto=1), None)
    if genesis is None:
        raise BundleError("the ledger is empty: it has no id yet")
    stored = list(store.records(ids=ids, upto=head.count))
    source = {"ledger_id": genesis.record_hash, "genesis": _row(genesis), "head_count": head.count,
              "head_hash": head.head_hash}  # fmt: skip
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": found.name,
        "version_id": found.id,
        "source": source,
        "records": [_row(record) for record in stored],
    }
    if signer is None:
        return bundle
    assert registered is not None
    own = public_key(str(registered.properties["public_key"]))
    bundle["signer"] = {"name": signer.principal, "public_key": own.openssh_str(), "fingerprint": own.sha256_str()}
    attested = attestation(source, str(found.name), stored)
    bundle |= {"attestation": attested, "attestation_signature": _signed(signer, attestation_payload(attested), own)}
    return bundle | {"signature": _signed(signer, canonical_json(bundle).encode(), own)}


def _signed(signer: Signer, payload: bytes, own: PublicKey) -> str:
    """`payload`'s armored signature by `signer`, whose key must be `own` (their registered key)."""
    armored, key = signer.sign(payload)
    if key != own:
        raise BundleError(f"{signer.key} is not {signer.principal}'s registered key ({own.sha256_str()})")
    return armored


def to_bytes(bundle: dict[str, Any]) -> bytes:
    """The bundle's file: sorted keys, indented for people, ASCII; the same bytes for the same bundle."""
    return (json.dumps(bundle, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n").encode()


def write_bundle(data: bytes, path: Path, force: bool = False) -> None:
    """Write `data` to `path` whole or not at all (common.files: renamed over a file, written into a device
    or FIFO such as /dev/stdout, never renamed over one)."""
    parent = path.parent
    if not parent.is_dir():
        raise BundleError(f"{path}: the folder {parent} does not exist")
    try:
        if path.exists() and not output_target(path)[1] and not force:  # a device or FIFO is written into
            raise BundleError(f"{path} exists: pass --force to replace it")
        write_atomic(path, data)
    except TargetError as error:
        raise BundleError(str(error)) from None
    except OSError as error:
        raise BundleError(f"{path}: cannot write the bundle ({error.strerror or error})") from None


def export_bundle(store: LedgerStore, version: str, path: Path, signer: Signer | None, force: bool = False) -> Bundle:
    """Write `version`'s bundle to `path`; return it."""
    data = build_bundle(store, version, signer)
    write_bundle(to_bytes(data), path, force)
    return Bundle.model_validate(data)


# -- reading and checking ------------------------------------------------------------------------------


def read_bundle(path: Path, limit: int = MAX_BUNDLE_BYTES) -> tuple[Bundle, dict[str, Any], bytes]:
    """The bundle in `path`, its JSON as read, and its bytes; BundleError (one line) if it is none, or if
    it is larger than `limit` bytes or not a regular file (never read whole)."""
    try:
        raw = read_limited(path, limit)
    except Refused as refused:
        raise BundleError(f"{path}: cannot read the bundle ({refused})") from None
    except OSError as error:
        raise BundleError(f"{path}: cannot read the bundle ({error.strerror or error})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BundleError(f"{path}: not a lineage bundle (byte {error.start} is not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        detail = f"{error.msg} at line {error.lineno} column {error.colno}"
        raise BundleError(f"{path}: not a lineage bundle: truncated or not JSON ({detail})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f'{path}: not a lineage bundle (no "format": "{FORMAT}")')
    if data.get("format_version") != FORMAT_VERSION:
        found = str(data.get("format_version"))[:40]
        raise BundleError(f"{path}: bundle format version {found}; this lineage reads version {FORMAT_VERSION}")
    try:
        bundle = Bundle.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top)"
        raise BundleError(f"{path}: {where}: {first['msg']}") from None
    return bundle, data, raw


def _entity(record: BundleRecord, where: str, chained: LedgerRecord) -> Entity:
    """The record's entity (`chained`: its columns with its format), its columns checked against its body."""
    label = f"{where}: record seq {record.seq} (entity {record.entity_id[:200]})"
    try:
        entity = chained.entity()
    except (ValueError, KeyError, LedgerError) as error:  # pydantic's ValidationError is a ValueError
        first = str(error).strip().splitlines()
        raise BundleError(f"{label}: its body is not a valid {record.kind[:40]} ({' '.join(first[:3])})") from None
    expected = record_columns(entity)
    if chained.format != ledger_format.CURRENT:  # an older body, upgraded in memory: it is not today's text
        expected.pop("body")
    for column, value in expected.items():
        if getattr(record, column) != value:
            said = str(getattr(record, column))[:80]
            raise BundleError(f"{label}: its {column} column says {said!r}, its body says {str(value)[:80]!r}")
    return entity


def check_records(bundle: Bundle, where: str) -> dict[str, tuple[BundleRecord, Entity]]:
    """Every record hashes to its record_hash and extends the one before it where both are in the bundle;
    the genesis record hashes to the ledger id. Each entity's latest record and entity, in seq order."""
    source = bundle.source
    genesis = source.genesis
    if genesis.seq != 1 or genesis.prev_hash != GENESIS or record_hash(genesis.columns()[:-1]) != genesis.record_hash:
        raise BundleError(f"{where}: tampered: its ledger's first record does not hash to its record_hash")
    if genesis.record_hash != source.ledger_id:
        raise BundleError(f"{where}: tampered: the ledger id is not the hash of the ledger's first record")
    latest: dict[str, tuple[BundleRecord, Entity]] = {}
    previous: BundleRecord | None = None
    for record, chained in zip(bundle.records, along_chain(r.columns() for r in bundle.records), strict=True):
        label = f"{where}: tampered: record seq {record.seq} (entity {record.entity_id[:200]})"
        digest = record_hash(record.columns()[:-1])
        if digest != record.record_hash:
            raise BundleError(f"{label}: its columns hash to {digest}, its record_hash says {record.record_hash}")
        if previous is not None and record.seq <= previous.seq:
            raise BundleError(f"{label}: out of order, after seq {previous.seq}")
        if previous is not None and record.seq == previous.seq + 1 and record.prev_hash != previous.record_hash:
            raise BundleError(f"{label}: its prev_hash is not record {previous.seq}'s hash")
        if record.seq > source.head_count:
            raise BundleError(f"{label}: beyond the ledger head's {source.head_count} records")
        if record.seq == source.head_count and record.record_hash != source.head_hash:
            raise BundleError(f"{label}: it is the head record, but its hash is not the head's")
        if record.seq == 1 and record != genesis:
            raise BundleError(f"{label}: it is not the ledger's first record")
        previous = record
        if ledger_format.declared_version(record.kind, record.entity_type, record.body) is not None:
            continue  # says how to read the records after it; not an entity to import
        latest.pop(record.entity_id, None)  # re-inserted: the order is that of each entity's latest record
        latest[record.entity_id] = (record, _entity(record, where, chained))
    if bundle.version_id not in latest:
        raise BundleError(f"{where}: the bundle holds no record of its version {bundle.version[:200]}")
    return latest


def trusted_signer(bundle: Bundle, data: dict[str, Any], store: LedgerStore, where: str) -> tuple[str, PublicKey]:
    """The bundle's signature checks and its key is an active approver's here: that approver's name and
    the key."""
    import sshsig

    if bundle.signature is None or bundle.signer is None:
        raise BundleError(f"{where}: the bundle is not signed: export it with --by and --key")
    payload = canonical_json({key: value for key, value in data.items() if key != "signature"}).encode()
    try:
        key = sshsig.check_signature(payload, bundle.signature, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        raise BundleError(f"{where}: bad signature: it does not match the bundle's contents ({error})") from None
    fingerprint = key.sha256_str()
    for name, registered in current(store).keys.items():
        if registered == key and name != PIPELINE:
            return name, key
    raise BundleError(
        f"{where}: untrusted signer: {bundle.signer.name[:100]!r} of ledger {bundle.source.ledger_id[:12]} signed "
        f"it with key {fingerprint}, which is no active approver's key in this ledger; to trust it, an approver "
        f"registers that public key: lineage approvers add NAME --public-key KEY.pub --by YOU --key YOUR_KEY"
    )


def check_attestation(bundle: Bundle, key: PublicKey, where: str) -> None:
    """The attestation is signed by `key` (the bundle's) and says what the bundle's records say."""
    import sshsig

    if bundle.attestation is None or bundle.attestation_signature is None:
        raise BundleError(f"{where}: the bundle carries no signed attestation: export it with --by and --key")
    try:
        signed_by = sshsig.check_signature(attestation_payload(bundle.attestation), bundle.attestation_signature,
                                           NAMESPACE)  # fmt: skip
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        raise BundleError(f"{where}: bad attestation signature: it does not match the attestation ({error})") from None
    if signed_by != key:
        raise BundleError(
            f"{where}: the attestation is signed with key {signed_by.sha256_str()}, "
            f"not the bundle's key {key.sha256_str()}"
        )
    records = [record.columns() for record in bundle.records]
    expected = attestation(bundle.source.model_dump(), bundle.version, records)
    for field in sorted(set(expected) | set(bundle.attestation)):
        said, found = bundle.attestation.get(field), expected.get(field)
        if said == found:
            continue
        if isinstance(said, dict) and isinstance(found, dict):
            entry = next(k for k in sorted(set(said) | set(found)) if said.get(k) != found.get(k))
            field, said, found = f"{field}.{entry[:100]}", said.get(entry), found.get(entry)
        raise BundleError(
            f"{where}: the attestation disagrees with the bundle's records: its {field} is {str(said)[:100]!r}, "
            f"the records give {str(found)[:100]!r}"
        )


def check_decisions(latest: dict[str, tuple[BundleRecord, Entity]], where: str) -> None:
    """Every Approver record's signature matches it, and every signed decision checks against the key of
    its signer's Approver record in the bundle."""
    keys = {}
    for record, entity in latest.values():
        if isinstance(entity, Context) and entity.context_type == ContextType.APPROVER:
            body = json.loads(record.body)
            problem = record_signature_problem(body, "context")
            if problem:
                raise BundleError(f"{where}: record seq {record.seq} (Approver {entity.name[:100]}): {problem}")
            try:
                keys[entity.name] = public_key(str(entity.properties.get("public_key")))
            except SignatureError as error:
                raise BundleError(f"{where}: record seq {record.seq}: {error}") from None
    for record, entity in latest.values():
        signed = isinstance(entity, Action) and entity.parameters.get(SIGNATURE) not in (None, UNSIGNED)
        if signed and isinstance(entity, Action) and entity.action_type == ActionType.PROMOTION:
            problem, _ = decision_problem(json.loads(record.body), keys)
            if problem:
                raise BundleError(f"{where}: record seq {record.seq} (decision {entity.id}): {problem}")


def check_objects(latest: dict[str, tuple[BundleRecord, Entity]], objects: Objects) -> int:
    """Every file a stage of the bundle produced is in DVC's storage here and hashes to its md5, and so does
    every other file found there; how many were checked. A stage's input no stage produced (data/raw, a
    reference snapshot) may be kept in git instead, which DVC hashes but does not store: absent is allowed."""
    stages = {i for i, (_, e) in latest.items() if isinstance(e, Action) and e.action_type == ActionType.STAGE}
    made = {AssociationType.PRODUCED, AssociationType.ASSOCIATED_WITH}
    outputs = {
        e.destination_id
        for _, e in latest.values()
        if isinstance(e, Association) and e.association_type in made and e.source_id in stages
    }
    checked = 0
    for _, entity in latest.values():
        if not isinstance(entity, Artifact) or entity.artifact_type not in FILE_TYPES:
            continue
        required = entity.id in outputs
        files = [(entity.source_uri, entity.md5)]
        try:
            if entity.md5.endswith(".dir"):
                listing = objects.read_directory(entity.md5)
                if listing is None and not required:
                    continue
                _found(objects, entity.source_uri, entity.md5, listing is not None)
                files = [(f"{entity.source_uri}/{e.get('relpath')}", str(e["md5"])) for e in listing or []]
            for uri, md5 in files:
                present = objects.read(md5) is not None
                if required or present:
                    _found(objects, uri, md5, present)
                    checked += 1
        except AlteredObject as error:
            raise BundleError(f"{entity.source_uri}: {error} ({objects.location(entity.md5) or 'DVC cache'})") from None
        except ObjectError as error:
            raise BundleError(f"{entity.source_uri}: {error}") from None
    return checked


def _found(objects: Objects, uri: str, md5: str, present: bool) -> None:
    if not present:
        remote = f" ({objects.remote_url})" if objects.remote_url else ""
        raise BundleError(
            f"{uri} (md5 {md5}) is in neither the DVC cache nor the remote{remote}: copy the objects there "
            "first (`dvc push -r <this remote>` where the bundle was made)"
        )


# -- import --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Imported:
    """What an import did."""

    appended: int  # records appended (0: the ledger held everything already)
    ledger_id: str
    head: Head  # the source ledger's head when the bundle was made
    version: str
    status: str  # the local version's status
    created: bool  # the local candidate was created by this import
    same_as: int  # SameAs edges added
    signer: str  # the local approver whose key signed the bundle
    bundle_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "appended": self.appended,
            "source_ledger": self.ledger_id,
            "source_head_count": self.head.count,
            "source_head_hash": self.head.head_hash,
            "version": self.version,
            "status": self.status,
            "created": self.created,
            "same_as": self.same_as,
            "signer": self.signer,
            "bundle_sha256": self.bundle_sha256,
        }

    def line(self) -> str:
        source = f"ledger {self.ledger_id} head {self.head.count}/{self.head.head_hash}"
        if not self.appended:
            return f"nothing to import: 0 records appended, this ledger already holds {source} for {self.version}"
        return (
            f"imported {self.appended} records from {source}: version {self.version} as {self.status}, "
            f"{self.same_as} linked SameAs"
        )


def _qualified(context: Context, origin: str) -> Context:
    return Context(
        context_type=context.context_type,
        name=f"{context.name}@{origin[:12]}",
        source_uri=context.source_uri,
        properties={**context.properties, IMPORTED_FROM: origin, ORIGIN_NAME: context.name},
    )


@dataclass(frozen=True)
class Plan:
    """What an import appends, nothing appended yet."""

    carried: list[Entity]  # the bundle's entities the ledger lacks, imported approvers first
    local: list[Entity]  # the local version's new records and edges, and new SameAs edges
    created: Context | None  # the local candidate, when this import creates it
    same_as: int  # SameAs edges among `local`


def _carried(entity: Entity, renamed: dict[str, str], origin: str) -> Entity:
    """The entity as the importing ledger records it: a clashing context qualified, an edge remapped."""
    if isinstance(entity, Context) and entity.context_type in QUALIFIED:
        return _qualified(entity, origin)
    if isinstance(entity, Association):
        return Association(
            source_id=renamed.get(entity.source_id, entity.source_id),
            destination_id=renamed.get(entity.destination_id, entity.destination_id),
            association_type=entity.association_type,
        )
    return entity


def plan(store: LedgerStore, bundle: Bundle, latest: dict[str, tuple[BundleRecord, Entity]], where: str) -> Plan:
    """What the ledger lacks of the bundle, and the local version's records; nothing is appended. An action or
    context that would take the id of a record this ledger holds, with other content, is refused: an import
    never rewrites what is here (a decision, a run)."""
    origin = bundle.source.ledger_id
    entities = {entity_id: entity for entity_id, (_, entity) in latest.items()}
    renamed = {
        entity_id: _qualified(e, origin).id
        for entity_id, e in entities.items()
        if isinstance(e, Context) and e.context_type in QUALIFIED
    }
    carried = [_carried(entity, renamed, origin) for entity in entities.values()]
    dev_version = entities[bundle.version_id]
    assert isinstance(dev_version, Context)  # check_records read it from the bundle's own version id
    chained = along_chain(r.columns() for r in bundle.records)
    first = next(r.entity() for r in chained if r.entity_id == bundle.version_id)
    assert isinstance(first, Context)
    local_id = context_id(ContextType.MODEL_VERSION, dev_version.name)
    # What the version is comes from its first record there: a later one never changes its model or verdicts.
    created = _candidate(first, origin) if store.get(local_id) is None else None
    local: list[Entity] = [] if created is None else [created, *_ties(dev_version, entities)]
    same_as = _same_as(store, carried, created)
    present = store.latest(e.id for e in [*carried, *local, *same_as])
    if _older(store, bundle):  # what a newer bundle of that ledger brought stays: only absent entities are added
        present_ids = set(present)
        carried = [e for e in carried if e.id not in present_ids]
    for entity in carried:
        here = present.get(entity.id)
        ours = not (isinstance(here, Context) and here.properties.get(IMPORTED_FROM) == origin)  # not that ledger's
        if not isinstance(entity, Artifact | Association) and here is not None and here != entity and ours:
            raise BundleError(
                f"{where}: refused, nothing appended: its {type(entity).__name__} {entity.id[:100]} would take the id "
                f"of a record this ledger already holds, with other content"
            )
    fresh = [e for e in carried if _new(e, present)]
    fresh.sort(key=lambda e: not (isinstance(e, Context) and e.context_type == ContextType.APPROVER))
    news = [e for e in local if _new(e, present)]
    new_same_as = [e for e in same_as if _new(e, present)]
    return Plan(fresh, news + new_same_as, created, len(new_same_as))


def _ties(dev_version: Context, entities: dict[str, Entity]) -> list[Entity]:
    """The edges a local run gives its version (recorder.py), to the local candidate of `dev_version`:
    the model AssociatedWith it, the run AssociatedWith it, the gates ContributedTo it."""
    local_id = context_id(ContextType.MODEL_VERSION, dev_version.name)
    model_md5 = dev_version.properties.get("model_md5")
    run_id = context_id(ContextType.PIPELINE_RUN, str(dev_version.properties.get("flow_run_id")))
    models = [e.id for e in entities.values() if isinstance(e, Artifact) and e.artifact_type == ArtifactType.MODEL
              and e.md5 == model_md5]  # fmt: skip
    gates = [
        edge.source_id
        for edge in entities.values()
        if isinstance(edge, Association) and edge.destination_id == dev_version.id
        and isinstance(gate := entities.get(edge.source_id), Action) and gate.action_type in BY_ACTION_TYPE
    ]  # fmt: skip
    tied = [*models, run_id] if run_id in entities else models
    edges: list[Entity] = [
        Association(source_id=i, destination_id=local_id, association_type=AssociationType.ASSOCIATED_WITH)
        for i in tied
    ]
    return edges + [
        Association(source_id=i, destination_id=local_id, association_type=AssociationType.CONTRIBUTED_TO)
        for i in gates
    ]


def _candidate(dev_version: Context, origin: str) -> Context:
    """A local candidate for a version trained in ledger `origin`."""
    kept = ("model_md5", "flow_run_id", *PROPERTIES)
    return Context(
        context_type=ContextType.MODEL_VERSION,
        name=dev_version.name,
        source_uri=dev_version.source_uri,
        properties={
            "status": ModelStatus.CANDIDATE.value,
            **{key: dev_version.properties[key] for key in kept if key in dev_version.properties},
            "trained_in": origin,
        },
    )


def _same_as(store: LedgerStore, carried: list[Entity], created: Context | None) -> list[Entity]:
    """SameAs edges from imported contexts to the local ones that are the same thing."""
    edges: list[Entity] = []
    for entity in carried:
        if not isinstance(entity, Context) or IMPORTED_FROM not in entity.properties:
            continue
        name = str(entity.properties[ORIGIN_NAME])
        if entity.context_type == ContextType.MODEL_VERSION:
            mine = created is not None and created.name == name
            local = created if mine else store.get(context_id(entity.context_type, name))
            md5 = entity.properties.get("model_md5")
            same = isinstance(local, Context) and local.properties.get("model_md5") == md5
        elif entity.context_type == ContextType.APPROVER:
            local = approver(store, name)
            same = local is not None and local.properties.get("public_key") == entity.properties.get("public_key")
        else:
            continue
        if same and local is not None:
            edges.append(
                Association(source_id=entity.id, destination_id=local.id, association_type=AssociationType.SAME_AS)
            )
    return edges


def _older(store: LedgerStore, bundle: Bundle) -> bool:
    """A bundle of a ledger from an earlier head than one imported before."""
    heads = [
        action.parameters.get("source_head_count")
        for action in store.find(Kind.ACTION, ActionType.IMPORT.value)
        if isinstance(action, Action) and action.parameters.get("source_ledger") == bundle.source.ledger_id
    ]
    return any(isinstance(count, int) and count > bundle.source.head_count for count in heads)


def _new(entity: Entity, present: dict[str, Entity]) -> bool:
    """Not in the ledger yet: an artifact or edge by its id, an action or context by its latest record."""
    if entity.id not in present:
        return True
    return not isinstance(entity, Artifact | Association) and present[entity.id] != entity


def import_bundle(store: LedgerStore, path: Path, objects: Objects) -> Imported:
    """Check the bundle at `path` and append what the ledger lacks of it, in one transaction."""
    head = store.head()
    bundle, data, raw = read_bundle(path)
    where = str(path)
    latest = check_records(bundle, where)
    signer, key = trusted_signer(bundle, data, store, where)
    check_attestation(bundle, key, where)
    check_decisions(latest, where)
    check_objects(latest, objects)
    planned = plan(store, bundle, latest, where)
    fresh, news, created, same_as = planned.carried, planned.local, planned.created, planned.same_as
    source = Head(bundle.source.head_count, bundle.source.head_hash)
    sha256 = hashlib.sha256(raw).hexdigest()
    local_id = context_id(ContextType.MODEL_VERSION, bundle.version)

    def result(appended: int) -> Imported:
        local = store.get(local_id)
        status = str(local.properties.get("status")) if isinstance(local, Context) else "?"
        return Imported(
            appended=appended,
            ledger_id=bundle.source.ledger_id,
            head=source,
            version=bundle.version,
            status=status,
            created=created is not None,
            same_as=same_as,
            signer=signer,
            bundle_sha256=sha256,
        )

    if not fresh and not news:
        return result(0)
    decisions = [e.id for e in fresh if isinstance(e, Action) and e.action_type == ActionType.PROMOTION]
    now = dt.datetime.now(dt.UTC)
    action = Action(
        action_type=ActionType.IMPORT,
        status=ActionStatus.COMPLETED,
        start=now,
        end=now,
        command=f"lineage import bundle {path.name}",
        parameters={
            "source_ledger": bundle.source.ledger_id,
            "source_head_count": source.count,
            "source_head_hash": source.head_hash,
            "version": bundle.version,
            "bundle_sha256": sha256,
            "signer": bundle.signer.name if bundle.signer else "",
            "signer_fingerprint": key.sha256_str(),
            "trusted_as": signer,
            "records": len(bundle.records),
            "entities": len(fresh),
            "same_as": same_as,
            "created_candidate": created is not None,
            "decisions": list(decisions),
            "attestation": bundle.attestation,
            "attestation_signature": bundle.attestation_signature,
        },
    )
    edge = Association(source_id=action.id, destination_id=local_id, association_type=AssociationType.CONTRIBUTED_TO)
    seqs = store.append([action, *fresh, *news, edge], expected_head=head)
    return result(len({seq for seq in seqs if seq > head.count}))  # (an artifact or edge present keeps its seq)
