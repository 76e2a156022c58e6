"""Which decisions hold, and what the ones that hold imply: the model registry as the signed record proves it.

A decision (a Promotion action) holds when:
- it names this ledger (once a policy is recorded) and is recorded once: a replay is refused;
- it is signed by an approver active at that point, with their registered key; or it is the pipeline's own
  decision, unsigned, where the ledger's policy allows unsigned decisions;
- the pipeline's key signs only the pipeline's own decisions: promoted (without an override), rejected,
  held and kept; a rollback and an override are signed by people;
- a promotion without an override relies on gate verdicts that allow it, as the version's first record
  holds them (and as the decision quotes them, when it does);
- an override's promotion follows a request for the same version that holds, signed by someone else, by
  name and by key (four eyes).

What holds implies the registry: production is the version of the latest promotion or rollback that
holds, and a version's status follows from the decisions that hold on it. Status records and the
production pointer only say so for people and graphs: readers never take them on their word, and
`lineage verify` names the first one that says otherwise (`RegistryCheck`). Decisions imported from
another ledger are that ledger's history: they change nothing here.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sshsig.ssh_public_key import PublicKey

from gates.table import PROPERTIES, may_promote, said, unwritten
from lineage.authority import GOVERNANCE, PIPELINE, Authority, Policy, replay
from lineage.entities import (
    IMPORTED_FROM,
    ORIGIN_NAME,
    Action,
    ActionType,
    Context,
    ContextType,
    Decision,
    ModelStatus,
    context_id,
)
from lineage.signatures import (
    SIGNATURE,
    UNSIGNED,
    body_sha256,
    decision_problem,
    original_body,
    public_key,
    record_signature_problem,
)
from lineage.store import END, Head, Kind, LedgerRecord, LedgerStore, misfiled

# What a pipeline run decides by itself (a promotion: without an override).
AUTOMATIC = {Decision.PROMOTED, Decision.REJECTED, Decision.HELD, Decision.KEPT}
MOVES_PRODUCTION = {Decision.PROMOTED, Decision.ROLLED_BACK}
PROMOTIONS = [(Kind.ACTION, ActionType.PROMOTION.value)]
PRODUCTION_POINTER = context_id(ContextType.DEPLOYMENT, "production")
# The pipeline's decisions that found every gate passed: only they vouch for the verdicts they quote (a rejection
# quotes them too, but of a version it refused: they may be a record someone wrote before the run).
VOUCHING = {Decision.PROMOTED, Decision.HELD}
# What a model version is, fixed by its first record: later records change its status, never these.
IDENTITY = ("model_md5", "flow_run_id", *PROPERTIES, "trained_in")


class Facts(Protocol):
    """What judging one decision needs besides the decision: what the ledger held just before seq `seq`."""

    def authority_at(self, seq: int) -> Authority: ...

    def verdicts(self, version: str, seq: int) -> dict[str, Any] | None: ...  # the version's first record's

    def vouched(self, version: str, seq: int) -> dict[str, Any] | None: ...  # the verdicts a pipeline decision quoted

    def status_before(self, version: str, seq: int) -> str | None: ...  # as the decisions that hold imply

    def last_request(self, version: str, seq: int) -> str | None: ...  # the version's latest override request

    def request(self, request_id: str, seq: int) -> tuple[str, PublicKey, str] | str: ...  # signer, key, version

    def recorded_before(self, entity_id: str, seq: int) -> bool: ...


def is_imported(record: LedgerRecord, values: dict[str, Any], authority: Authority) -> bool:
    """A decision of another ledger's history, carried in by an import: it names that ledger, or (recorded
    before decisions named one) an import that holds listed it before it was recorded."""
    named = values.get("ledger_id")
    if named is not None:
        return named != authority.ledger_id
    listed = authority.imported.get(record.entity_id)
    return listed is not None and listed < record.seq


def by_pipeline(values: dict[str, Any]) -> bool:
    """The pipeline's own decision: signed with its key, or unsigned in its name."""
    if values.get(SIGNATURE) in (None, UNSIGNED):
        return str(values.get("by", "")).startswith(PIPELINE)
    return values.get("signed_by") == PIPELINE


def judge(record: LedgerRecord, body: dict[str, Any], facts: Facts) -> tuple[str | None, PublicKey | None]:
    """Why the local decision at `record` (its parsed `body`) does not hold (None if it holds), and the key
    that signed it. The checks that need no read come first: a reader meets many forged decisions cheaply."""
    if (problem := misfiled(record)) is not None:
        return problem, None
    authority, values = facts.authority_at(record.seq), body["parameters"]
    outcome = values.get("decision")
    if outcome not in set(Decision):
        return f"decides {str(outcome)[:40]!r}, which is no decision", None
    if problem := authority.ledger_problem(values):
        return problem, None
    override = bool(values.get("override"))
    automatic = outcome in AUTOMATIC and not override
    key = None
    if values.get(SIGNATURE) in (None, UNSIGNED):
        if not authority.policy.unsigned_allowed:
            return "it is unsigned, and the ledger's policy refuses unsigned decisions", None
        if not automatic or not by_pipeline(values):
            return f"an unsigned {outcome} decision: only the pipeline's own decisions may be unsigned", None
    else:
        problem, key = decision_problem(body, authority.keys, "at this point")
        if problem:
            return problem, key
        if values.get("signed_by") == PIPELINE and not automatic:
            return f"a {outcome} decision signed by the pipeline's key, which signs only the pipeline's own", key
    if facts.recorded_before(record.entity_id, record.seq):
        return "a decision recorded a second time: a replay", key
    version = str(values.get("model_version"))
    if outcome == Decision.PROMOTED and not override:
        return _gates_problem(record, values, version, authority.policy.recorded, facts), key
    if outcome == Decision.PROMOTED:
        return _override_problem(record, values, version, key, facts), key
    if outcome == Decision.ROLLED_BACK and (status := facts.status_before(version, record.seq)) != ModelStatus.ARCHIVED:
        return f"it restores {version}, which is {status or 'not a version'}: a rollback restores a replaced one", key
    return None, key


def _gates_problem(
    record: LedgerRecord, values: dict[str, Any], version: str, vouching: bool, facts: Facts
) -> str | None:
    """Why a promotion without an override does not rely on gates that passed: as the version's first record holds
    them, as the decision quotes them, and (once a policy is recorded, for a person's promotion) as a decision of
    the pipeline's on that version, or one an import brought, quoted them."""
    verdicts = facts.verdicts(version, record.seq)
    if verdicts is None:
        return f"it promotes {version[:80]}, which has no record before it"
    if not may_promote(verdicts):
        return f"it promotes {version} without an override, but its gates did not pass as recorded ({said(verdicts)})"
    quoted = values.get("gates")
    if quoted is not None and quoted != verdicts:
        return f"it quotes gate verdicts {quoted} other than {version}'s record ({verdicts})"
    if vouching and not by_pipeline(values) and facts.vouched(version, record.seq) != verdicts:
        return f"it promotes {version}, whose verdicts no pipeline decision (nor an import) vouches for as recorded"
    return None


def _override_problem(
    record: LedgerRecord, values: dict[str, Any], version: str, key: PublicKey | None, facts: Facts
) -> str | None:
    """Why an override's promotion does not hold: it approves the version's pending request, by someone else."""
    request_id = str(values.get("override_request"))
    request = facts.request(request_id, record.seq)
    if isinstance(request, str):
        return request
    requester, requester_key, requested = request
    if requested != version:
        return f"it approves an override request for {requested}, not for {version}"
    if values.get("signed_by") == requester or key == requester_key:
        return f"the override was requested and approved by the same person ({requester}): four eyes needed"
    status = facts.status_before(version, record.seq)
    if status != ModelStatus.PENDING or facts.last_request(version, record.seq) != request_id:
        return f"it approves {version}'s override request {request_id}, which is not the one pending ({status})"
    return None


def gate_verdicts(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The gate verdicts a model version's record holds, as a decision quotes them: a gate added to the table
    after the record was written is absent from both, and judged as predating it (gates.table.recorded)."""
    return {gate: properties[gate] for gate in PROPERTIES if properties.get(gate) is not None}


def _decisions_on(
    store: LedgerStore, version: str, before: int | None = None, imported_from: str | None = None
) -> list[tuple[LedgerRecord, dict]]:
    """The well-filed Promotion records on `version` (by the edges into it; with `imported_from`, into that
    ledger's record of it, as an import brought them), with their bodies, in seq order."""
    context = f"{version}@{imported_from[:12]}" if imported_from else version
    version_id = context_id(ContextType.MODEL_VERSION, context)
    return _decision_records(store, {version_id: version}, before)[version_id]


def _decision_records(
    store: LedgerStore, named: dict[str, str], before: int | None = None
) -> dict[str, list[tuple[LedgerRecord, dict]]]:
    """For each ModelVersion context id in `named` (id -> the version name its decisions give), the well-filed
    Promotion records on it (by the edges into it) that name that version, with their bodies, in seq order: two
    reads, however many versions."""
    pointing: dict[str, list[str]] = {}  # decision id -> the contexts its edges point at
    for edge in store.edges(named, toward="destination"):
        pointing.setdefault(edge.source_id, []).append(edge.destination_id)
    found: dict[str, list[tuple[LedgerRecord, dict]]] = {version_id: [] for version_id in named}
    upto = None if before is None else before - 1
    for record in list(store.records(PROMOTIONS, ids=pointing, upto=upto)) if pointing else []:
        if misfiled(record) is None:
            body = json.loads(record.body)
            values = body.get("parameters")
            said = values.get("model_version") if isinstance(values, dict) else None  # no parameters: no version
            for version_id in dict.fromkeys(pointing[record.entity_id]):
                if said == named[version_id]:
                    found[version_id].append((record, body))
    return found


class StoreFacts:
    """Facts read from the ledger by index: what readers judge decisions with."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.ledger_id = store.ledger_id()
        self.governance = list(store.records(GOVERNANCE))
        self._seqs = [record.seq for record in self.governance]
        self._authorities: dict[int, Authority] = {}
        self.end = self.authority_at(END)

    def authority_at(self, seq: int) -> Authority:
        # The authority changes only at governance records: one replay per prefix of them, however many decisions.
        taken = bisect.bisect_left(self._seqs, seq)
        if taken not in self._authorities:
            self._authorities[taken] = replay(self.governance[:taken], self.ledger_id)
        return self._authorities[taken]

    def verdicts(self, version: str, seq: int) -> dict[str, Any] | None:
        first = self.store.first_record(context_id(ContextType.MODEL_VERSION, version), before=seq)
        return None if first is None else gate_verdicts(json.loads(first.body)["properties"])

    def vouched(self, version: str, seq: int) -> dict[str, Any] | None:
        first = self.store.first_record(context_id(ContextType.MODEL_VERSION, version), before=seq)
        trained_in = json.loads(first.body)["properties"].get("trained_in") if first is not None else None
        found = _decisions_on(self.store, version, before=seq)
        if isinstance(trained_in, str):  # a version imported from the ledger it was trained in
            found += _decisions_on(self.store, version, seq, trained_in)
        for record, body in sorted(found, key=lambda pair: pair[0].seq):
            values = body["parameters"]
            if values.get("decision") not in VOUCHING:
                continue
            if is_imported(record, values, self.end):
                if record.entity_id in self.end.attestations and "gates" in values:
                    return dict(values["gates"])
            elif by_pipeline(values) and judge(record, body, self)[0] is None:
                return dict(values["gates"]) if "gates" in values else self.verdicts(version, record.seq)
        return None

    def status_before(self, version: str, seq: int) -> str | None:
        if self.store.first_record(context_id(ContextType.MODEL_VERSION, version), before=seq) is None:
            return None
        return version_status(self.store, version, production(self.store, self, before=seq).name, self, before=seq)

    def last_request(self, version: str, seq: int) -> str | None:
        requests = [record.entity_id for record, body in _decisions_on(self.store, version, before=seq)
                    if body["parameters"].get("decision") == Decision.OVERRIDE_REQUESTED]  # fmt: skip
        return requests[-1] if requests else None

    def request(self, request_id: str, seq: int) -> tuple[str, PublicKey, str] | str:
        record = self.store.first_record(request_id, before=seq)
        if record is None or record.entity_type != ActionType.PROMOTION.value:
            return f"an override promotion whose request {request_id[:80]} is not recorded before it"
        return _request(record, json.loads(record.body), self)

    def recorded_before(self, entity_id: str, seq: int) -> bool:
        return self.store.first_record(entity_id, before=seq) is not None


def _request(record: LedgerRecord, body: dict[str, Any], facts: Facts) -> tuple[str, PublicKey, str] | str:
    """The override request at `record`: who signed it, with which key, for which version; or why it does not hold."""
    values = body["parameters"]
    if values.get("decision") != Decision.OVERRIDE_REQUESTED:
        return f"an override promotion whose request {record.entity_id} is a {values.get('decision')} decision"
    problem, key = judge(record, body, facts)
    if problem or key is None:
        return f"an override promotion whose request does not hold ({problem or 'unsigned'})"
    return str(values.get("signed_by")), key, str(values.get("model_version"))


# -- what readers see ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A decision or record that does not hold, and why."""

    seq: int
    entity_id: str
    reason: str
    version: str | None = None  # the version a refused decision would have put in production

    def line(self) -> str:
        return f"seq {self.seq} (entity {self.entity_id}): {self.reason}"


@dataclass(frozen=True)
class Production:
    """The version in production as the decisions that hold imply it, the decision that put it there, and what
    was passed over: later production decisions that do not hold, and a pointer that names another version."""

    name: str | None
    decision: LedgerRecord | None
    refused: list[Refusal] = field(default_factory=list)
    pointer: str | None = None
    gave_up: bool = False  # MAX_REFUSED decisions that do not hold, newest first: no answer (a flood of forgeries)

    @property
    def pointer_disagrees(self) -> bool:
        return self.pointer != self.name

    @property
    def action(self) -> Action | None:
        """The decision that put the version there, as recorded (None while no version is in production)."""
        decided = self.decision.entity() if self.decision is not None else None
        return decided if isinstance(decided, Action) else None

    def warnings(self) -> list[str]:
        lines = [f"refused decision at {r.line()}" for r in self.refused]
        if self.pointer_disagrees:
            lines.append(
                f"the production pointer names {self.pointer or 'no version'}, but the decisions that hold put "
                f"{self.name or 'no version'} in production"
            )
        return lines


MAX_REFUSED = 10_000  # a reader judges at most this many later production decisions that do not hold
# The answer for a ledger state, by its last record (seq and hash; never by the head row, which is not chained):
# a long-running reader (retail-serve's poll, the console) judges the decisions once per state.
_KNOWN: dict[Head, Production] = {}


def production(store: LedgerStore, facts: StoreFacts | None = None, before: int | None = None) -> Production:
    """Which version is in production (just before seq `before`, if given): the latest promotion or rollback
    that holds, newest first; a few reads when the latest one holds, however long the ledger."""
    head = store.tip() if before is None else None
    if head is not None and head in _KNOWN:
        return _KNOWN[head]
    found = _production(store, facts or StoreFacts(store), before)
    if head is not None:
        if len(_KNOWN) > 64:
            _KNOWN.clear()
        _KNOWN[head] = found
    return found


def _production(store: LedgerStore, facts: StoreFacts, before: int | None) -> Production:
    refused: list[Refusal] = []
    found: LedgerRecord | None = None
    records = store.records(PROMOTIONS, newest_first=True, upto=None if before is None else before - 1)
    try:
        for record in records:
            body, problem = _parsed(record)
            values = body.get("parameters") or {}
            if values.get("decision") not in MOVES_PRODUCTION and problem is None:
                continue
            if problem is None and is_imported(record, values, facts.end):
                if record.entity_id in facts.end.attestations:
                    continue  # another ledger's history, brought by an import that holds
                problem = f"it names ledger {str(values.get('ledger_id'))[:64]}, and no import here brought it"
            problem = problem or judge(record, body, facts)[0]
            if problem is None:
                found = record
                break
            refused.append(Refusal(record.seq, record.entity_id, problem, str(values.get("model_version"))))
            if len(refused) >= MAX_REFUSED:
                return Production(None, None, refused, None, gave_up=True)
    finally:
        records.close()  # type: ignore[attr-defined]
    pointer = store.get(PRODUCTION_POINTER)
    named = pointer.properties.get("model_version") if isinstance(pointer, Context) else None
    name = str(json.loads(found.body)["parameters"]["model_version"]) if found else None
    return Production(name, found, refused, str(named) if named else None)


def version_status(
    store: LedgerStore, version: str, current: str | None, facts: StoreFacts, before: int | None = None
) -> str:
    """Local version `version`'s status as the decisions that hold on it imply (those before seq `before`, if
    given, when `current` was in production): candidate until one does; production while it is the production
    version; archived or rejected when a later promotion or rollback replaced it."""
    status, put_at = ModelStatus.CANDIDATE.value, 0
    for record, body in _decisions_on(store, version, before):
        if is_imported(record, body["parameters"], facts.end) or judge(record, body, facts)[0] is not None:
            continue
        outcome = body["parameters"].get("decision")
        if outcome in MOVES_PRODUCTION:
            status, put_at = ModelStatus.PRODUCTION.value, record.seq
        elif outcome == Decision.OVERRIDE_REQUESTED:
            status = ModelStatus.PENDING.value
        elif outcome == Decision.REJECTED:
            status = ModelStatus.REJECTED.value
    if status == ModelStatus.PRODUCTION and current != version:
        status = _replaced(store, put_at, facts, before)
    return status


def _replaced(store: LedgerStore, since: int, facts: StoreFacts, before: int | None) -> str:
    """What became of the production version put there at seq `since` once the next production decision that
    holds replaced it: archived by a promotion, rejected by a rollback."""
    records = store.records(PROMOTIONS, after=since, upto=None if before is None else before - 1)
    try:
        for record in records:
            body, problem = _parsed(record)
            values = body.get("parameters") or {}
            moves = problem is None and values.get("decision") in MOVES_PRODUCTION
            if moves and not is_imported(record, values, facts.end) and judge(record, body, facts)[0] is None:
                rolled_back = values["decision"] == Decision.ROLLED_BACK
                return (ModelStatus.REJECTED if rolled_back else ModelStatus.ARCHIVED).value
    finally:
        records.close()  # type: ignore[attr-defined]
    return ModelStatus.ARCHIVED.value


def _parsed(record: LedgerRecord) -> tuple[dict[str, Any], str | None]:
    """A record's body, or why it cannot be judged (misfiled, or no entity of its kind)."""
    problem = misfiled(record)
    return ({}, problem) if problem else (json.loads(record.body), None)


def decisions_on(store: LedgerStore, versions: Iterable[Context]) -> dict[str, list[Action]]:
    """Each version's decisions (the Promotion actions tied to it), by the version's id, in the order recorded, each
    as first recorded (a later record of the same id is a replay or a rewrite, never the decision). Another ledger's
    record of a version (imported, lineage/bundle.py) has that ledger's decisions on it, as the import brought them.
    Every decision, whether it holds or not: which ones hold is `production` and `version_status`'s question."""
    named = {version.id: _decided_name(version) for version in versions}
    found: dict[str, list[Action]] = {}
    for version_id, records in _decision_records(store, named).items():
        first: dict[str, Action] = {}
        for record, body in records:
            first.setdefault(record.entity_id, Action.model_validate(body))
        found[version_id] = list(first.values())
    return found


def _decided_name(version: Context) -> str:
    """The name a decision on `version` gives: its own, or for an imported record, its name in its own ledger."""
    if IMPORTED_FROM in version.properties:
        return str(version.properties.get(ORIGIN_NAME, version.name))
    return version.name


# -- what verify checks ---------------------------------------------------------------------------------------


@dataclass
class DecisionReport:
    """What `RegistryCheck` found. On failure, `seq` and `entity_id` name the first record that does not hold."""

    policy: Policy = field(default_factory=Policy)
    valid: int = 0
    unsigned: int = 0
    imported: int = 0
    signers: set[str] = field(default_factory=set)
    seq: int | None = None
    entity_id: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.seq is None and not self.detail

    def __str__(self) -> str:
        if not self.ok:
            where = f"seq {self.seq} (entity {self.entity_id})" if self.seq is not None else "the ledger's end"
            return f"signatures FAILED at {where}: {self.detail}"
        by = f" (by {', '.join(sorted(self.signers))})" if self.signers else ""
        unsigned = f", {self.unsigned} unsigned decisions (allowed by the policy then)" if self.unsigned else ""
        imported = f", {self.imported} imported decisions valid in their own ledger" if self.imported else ""
        return f"signatures ok: {self.valid} valid{by}{unsigned}{imported}; policy: {self.policy.line()}"


_GOVERNED = {(kind.value, entity_type) for kind, entity_type in GOVERNANCE}
_STATE = [(Kind.CONTEXT, ContextType.MODEL_VERSION.value), (Kind.CONTEXT, ContextType.DEPLOYMENT.value)]
# Every record `RegistryCheck` reads: what grants authority, what uses it, and what states its effects.
CHECKED = [*GOVERNANCE, *PROMOTIONS, *_STATE]


class RegistryCheck:
    """`lineage verify`'s replay of the records that grant authority, use it and state its effects, in seq order:
    each governance record and decision must hold at its point, and each status record and move of the
    production pointer must say what the decisions that hold imply (after the decision it follows, or, in
    ledgers written before decisions came first, the one that follows it); a version's later records never
    change what its first one says it is (its model, its run, its verdicts). From `since` on (an incremental
    verification), what was recorded up to `since` is read from the ledger through `before`.

    Not `strict`, it is the readers' replay instead: what does not hold is passed over, and `status` ends as
    every version's status the decisions that hold imply (`lineage models list`)."""

    def __init__(
        self, ledger_id: str | None, before: StoreFacts | None = None, since: int = 0, strict: bool = True
    ) -> None:
        self.strict = strict
        self.authority = Authority(ledger_id)
        self.report = DecisionReport()
        self.before, self.since = before, since
        self.status: dict[str, str] = {}  # version -> the status the decisions imply
        self.pointer: str | None = None
        self.pointer_known = before is None
        self.identity: dict[str, dict[str, Any]] = {}  # version -> what its first record says it is
        self.vouches: dict[str, dict[str, Any]] = {}  # version -> the verdicts the pipeline's decision quoted
        self.requests: dict[str, tuple[str, PublicKey, str] | str] = {}
        self.last_requests: dict[str, str] = {}  # version -> its latest override request
        self.seen: set[str] = set()  # local decisions recorded
        self.unmatched: list[tuple[LedgerRecord, str]] = []  # state records awaiting the decision that follows

    # -- Facts, as recorded up to the record being checked -------------------------------------------------

    def authority_at(self, seq: int) -> Authority:
        return self.authority  # the replay is at `seq`

    def verdicts(self, version: str, seq: int) -> dict[str, Any] | None:
        if version in self.identity:
            return gate_verdicts(self.identity[version])
        return self.before.verdicts(version, self.since + 1) if self.before else None

    def vouched(self, version: str, seq: int) -> dict[str, Any] | None:
        if version in self.vouches:
            return self.vouches[version]
        return self.before.vouched(version, self.since + 1) if self.before else None

    def status_before(self, version: str, seq: int) -> str | None:
        return self._status(version)

    def last_request(self, version: str, seq: int) -> str | None:
        if version in self.last_requests:
            return self.last_requests[version]
        return self.before.last_request(version, self.since + 1) if self.before else None

    def request(self, request_id: str, seq: int) -> tuple[str, PublicKey, str] | str:
        if request_id in self.requests:
            return self.requests[request_id]
        if self.before is not None and self.before.recorded_before(request_id, self.since + 1):
            return self.before.request(request_id, self.since + 1)
        return f"an override promotion whose request {request_id[:80]} is not a decision recorded before it"

    def recorded_before(self, entity_id: str, seq: int) -> bool:
        if entity_id in self.seen:
            return True
        return self.before is not None and self.before.recorded_before(entity_id, self.since + 1)

    # -- the replay ----------------------------------------------------------------------------------------

    def feed(self, record: LedgerRecord) -> bool:
        """Check one record (in seq order); False once something does not hold (the report says what)."""
        if not self.report.ok:
            return False
        body, problem = _parsed(record)
        if problem is None:
            try:
                if record.entity_type == ActionType.PROMOTION.value:
                    problem = self._decision(record, body)
                elif (record.kind, record.entity_type) in _GOVERNED:
                    problem = self._governance(record, body)
                else:
                    problem = self._state(record, body["properties"], body["name"])
            except (KeyError, TypeError, AttributeError) as error:
                problem = f"a malformed record ({type(error).__name__}: {str(error)[:80]})"
        if problem and self.report.ok and self.strict:
            self._fail(record.seq, record.entity_id, problem)
        return self.report.ok

    def finish(self) -> DecisionReport:
        """The report, once every record was fed: a status record no decision followed does not hold."""
        if self.report.ok and self.unmatched:
            record, problem = self.unmatched[0]
            self._fail(record.seq, record.entity_id, problem)
        self.report.policy = self.authority.policy
        return self.report

    def _fail(self, seq: int, entity_id: str, detail: str) -> None:
        self.report.seq, self.report.entity_id, self.report.detail = seq, entity_id, detail

    def _governance(self, record: LedgerRecord, body: dict[str, Any]) -> str | None:
        values = body.get("properties") or body.get("parameters") or {}
        if record.kind == Kind.CONTEXT.value and IMPORTED_FROM in values:
            return imported_approver_problem(body, self.authority)
        if record.kind == Kind.ACTION.value:
            claimed = [str(d) for d in values.get("decisions") or [] if self.recorded_before(str(d), record.seq)]
            if claimed:
                return f"an import that claims decision {claimed[0]}, which this ledger recorded as its own"
        problem = self.authority.take(record)
        if problem is None and record.kind == Kind.CONTEXT.value:
            self.report.valid += 1
            self.report.signers.add(str(values.get("signed_by")))
        return problem

    def _decision(self, record: LedgerRecord, body: dict[str, Any]) -> str | None:
        values = body["parameters"]
        version = str(values.get("model_version"))
        if is_imported(record, values, self.authority):
            if self.recorded_before(record.entity_id, record.seq):
                return "an imported decision that takes the id of a decision this ledger recorded as its own"
            problem = imported_decision_problem(record, values, self.authority)
            if problem is None:
                self.report.imported += 1
                if isinstance(values.get("gates"), dict) and values.get("decision") in VOUCHING:
                    self.vouches.setdefault(version, dict(values["gates"]))
            return problem
        problem, key = judge(record, body, self)
        if problem:
            return problem
        self.seen.add(record.entity_id)
        if key is None:
            self.report.unsigned += 1
        else:
            self.report.valid += 1
            self.report.signers.add(str(values.get("signed_by")))
        outcome = values["decision"]
        if by_pipeline(values) and outcome in VOUCHING:
            self.vouches.setdefault(version, dict(values.get("gates") or self.verdicts(version, record.seq) or {}))
        if outcome == Decision.OVERRIDE_REQUESTED and key is not None:
            self.requests[record.entity_id] = (str(values.get("signed_by")), key, version)
            self.last_requests[version] = record.entity_id
        if outcome in MOVES_PRODUCTION:
            current = self._pointer()
            said = values.get("previous_production")
            if self.strict and "previous_production" in values and (said or None) != current:
                return f"it says it replaces {said or 'no version'}, but {current or 'no version'} was in production"
            if current and current != version:
                done = ModelStatus.ARCHIVED if outcome == Decision.PROMOTED else ModelStatus.REJECTED
                self.status[current] = done.value
            self.status[version], self.pointer, self.pointer_known = ModelStatus.PRODUCTION.value, version, True
        elif outcome == Decision.OVERRIDE_REQUESTED:
            self.status[version] = ModelStatus.PENDING.value
        elif outcome == Decision.REJECTED:
            self.status[version] = ModelStatus.REJECTED.value
        waiting, self.unmatched = self.unmatched, []
        for state, _ in waiting:  # status records written before their decision, in older ledgers
            entity = json.loads(state.body)
            if problem := self._state(state, entity["properties"], entity["name"], again=True):
                self._fail(state.seq, state.entity_id, problem)
                break
        return None

    def _state(self, record: LedgerRecord, values: dict[str, Any], name: str, again: bool = False) -> str | None:
        """A status record or a move of the production pointer: it must say what the decisions imply."""
        if IMPORTED_FROM in values:
            return None
        if record.entity_type == ContextType.MODEL_VERSION.value:
            if not again and name not in self.identity and not self._known_before(record.entity_id):
                self.status[name] = ModelStatus.CANDIDATE.value  # a new version starts as a candidate
                self.identity[name] = {key: values.get(key) for key in IDENTITY}
                md5 = values.get("model_md5")
                if self.strict and isinstance(md5, str) and name != f"model-{md5[:12]}":
                    return f"a version named {name} for model md5 {md5}: its name is not its model's"
                if self.strict and (odd := unwritten(values)):
                    return f"a version {name} recorded with gate verdicts no run writes ({', '.join(odd)})"
            if not self.strict:
                return None
            if not again and (changed := self._changed_identity(name, values)):
                return f"a later record of {name} changes what it is ({changed}): a version is its first record's"
            implied = self._status(name)
            said = values.get("status")
            problem = None if said == implied else (
                f"a status change no decision that holds justifies: the record says {name} is {said}, "
                f"the decisions imply {implied}"
            )  # fmt: skip
        elif record.entity_id == PRODUCTION_POINTER and self.strict:
            implied, said = self._pointer(), values.get("model_version")
            problem = None if said == implied else (
                f"a move of the production pointer to {said} that no decision that holds justifies "
                f"(the decisions imply {implied or 'no version'})"
            )  # fmt: skip
        else:
            return None  # another deployment's configuration
        if problem and not again:
            self.unmatched.append((record, problem))
            return None
        return problem

    def _changed_identity(self, name: str, values: dict[str, Any]) -> str | None:
        if name not in self.identity and self.before is not None:
            record = self.before.store.first_record(context_id(ContextType.MODEL_VERSION, name), self.since + 1)
            if record is not None:
                self.identity[name] = {key: json.loads(record.body)["properties"].get(key) for key in IDENTITY}
        first = self.identity.get(name, {})
        changed = [key for key in IDENTITY if values.get(key) != first.get(key)]
        return ", ".join(f"{key} {first.get(key)} -> {values.get(key)}" for key in changed) or None

    def _known_before(self, entity_id: str) -> bool:
        return self.before is not None and self.before.recorded_before(entity_id, self.since + 1)

    def _status(self, version: str) -> str | None:
        if version not in self.status and self.before is not None:  # as the decisions up to `since` imply it
            found = self.before.status_before(version, self.since + 1)
            if found is not None:
                self.status[version] = found
        return self.status.get(version)

    def _pointer(self) -> str | None:
        if not self.pointer_known and self.before is not None:
            self.pointer = production(self.before.store, self.before, before=self.since + 1).name
            self.pointer_known = True
        return self.pointer


def imported_approver_problem(body: dict[str, Any], authority: Authority) -> str | None:
    """Why an Approver record imported from another ledger does not hold: its signature must match the record as
    its own ledger holds it, and its key be the one the latest import from that ledger attests for its name."""
    original = original_body(body)
    if problem := record_signature_problem(original, "context"):
        return f"imported Approver record: {problem}"
    name, origin = str(original["name"]), str(body["properties"][IMPORTED_FROM])
    attested = authority.attested.get(origin, {}).get(name)
    if attested is None:
        return f"imported Approver record {name!r}: no import attested by an approver here vouches for it"
    key = public_key(str(body["properties"].get("public_key")), f"imported Approver record {name!r}")
    if key != attested:
        return (
            f"imported Approver record {name!r}: its key {key.sha256_str()} is not the one its import's "
            f"attestation gives ({attested.sha256_str()})"
        )
    return None


def imported_decision_problem(record: LedgerRecord, values: dict[str, Any], authority: Authority) -> str | None:
    """Why a decision imported from another ledger does not hold: an import that holds must list it, its body be
    the one that import's attestation vouches for, and its signature check against the attested keys."""
    attested = authority.attestations.get(record.entity_id)
    if attested is None:
        return (
            f"a decision signed for ledger {str(values.get('ledger_id'))[:64]}, which no import here brought: a replay"
        )
    if body_sha256(record.body) != attested.decisions.get(record.entity_id):
        return "imported decision: its body is not the one its import's attestation vouches for"
    if values.get(SIGNATURE) in (None, UNSIGNED):
        return None
    problem, _ = decision_problem(json.loads(record.body), attested.approvers)
    return f"imported decision: {problem} (by its import's attestation)" if problem else None


def statuses(store: LedgerStore) -> dict[str, str]:
    """Every local version's status as the decisions that hold imply it: one pass over the decisions."""
    replay_ = RegistryCheck(store.ledger_id(), strict=False)
    for record in list(store.records(CHECKED)):
        replay_.feed(record)
    return replay_.status
