"""Ledger format versions: how a record written years ago is read by today's code.

What is stored: a record's body is its entity as canonical JSON, in the fields the code had when it was written.
The chain says which format that was: a `LedgerFormat` context named "format" with properties {"version": N} is a
**format declaration**, and every record after it, up to the next one, is written in format N; records before
any declaration are format 1. The store writes a declaration once per version per ledger, just before the first
record it writes under a newer format than the ledger's latest declared one (`LedgerStore.append`). It is hashed
and chained like any record, so a ledger's formats cannot be changed without breaking its chain.

How an old record is read: its stored bytes never change (its hash, `verify`, signatures and bundles keep using
them). Reading it passes its JSON body through `UPGRADES[version]`, one step per version, up to `CURRENT`, before
the pydantic model validates it (`upgraded`, called by `LedgerRecord.entity`). A record of a newer format than
`CURRENT` is refused in one line (store.NewerFormat): the code is too old to read it.

How to change an entity's fields (rename, remove, restructure) in lineage/entities.py:
1. Change the model.
2. Add `upgrade_N_to_N1(kind, body) -> body` here, turning a format-N body into the new shape (a rename: pop the
   old key, set the new one), register it in UPGRADES under N, and bump CURRENT to N+1.
3. Add a case to tests/unit/test_ledger_format.py; the committed old ledger (tests/fixtures/ledger_v1) must still
   read and verify. Never rewrite that fixture.
4. Code that reads bodies as raw JSON instead of through `entity()` (signatures, lineage/decisions.py,
   lineage/authority.py: a decision's `parameters`, an approver's `properties`) sees the stored shape: a change
   of those fields must be handled there too. Signatures always cover the stored bytes, never an upgraded body.
A new optional field with a default needs no step: older bodies simply lack it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from lineage.entities import Context, ContextType

FIRST = 1  # the format of every record before the ledger's first declaration
CURRENT = 1  # the format this code writes; the records it reads are upgraded to it
NAME = "format"  # the name of the declarations' context (one context, one record per declared version)

Body = dict[str, Any]
# UPGRADES[n] turns a format-n body of a record of `kind` into a format-(n+1) body. Empty while CURRENT is 1.
UPGRADES: dict[int, Callable[[str, Body], Body]] = {}


def upgraded(kind: str, body: Body, version: int) -> Body:
    """`body`, written in format `version`, in the shape of CURRENT (the same dict when nothing changed)."""
    for step in range(version, CURRENT):
        body = UPGRADES[step](kind, body)
    return body


def declaration(version: int) -> Context:
    """The record saying that the records after it are written in format `version`."""
    at = dt.datetime.now(dt.UTC).isoformat()  # also keeps two ledgers' declarations apart
    return Context.model_validate(
        {"context_type": ContextType.LEDGER_FORMAT, "name": NAME, "properties": {"version": version, "declared_at": at}}
    )


def declared_version(kind: str, entity_type: str, body: str) -> int | None:
    """The version a record declares, if it is a format declaration (None if it is not); 0 for a declaration that
    names no version, which no code reads."""
    if kind != "context" or entity_type != ContextType.LEDGER_FORMAT.value:
        return None
    try:
        version = json.loads(body)["properties"]["version"]
    except (ValueError, KeyError, TypeError):
        return 0
    return version if isinstance(version, int) and not isinstance(version, bool) and version >= FIRST else 0
