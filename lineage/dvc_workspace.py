"""What the recorder and the live OpenLineage events both read from a DVC workspace: dvc.lock, the schema of
its Parquet files, the machine and folder it is on, and where a file pushed to the DVC remote is stored.

One reader for both, so an event built while a stage runs and the one exported later from the ledger
name the same datasets with the same facts.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from lineage.entities import PropertyValue

LOCK_FILE = "dvc.lock"
# Object stores name an object by its key (no leading slash); file systems by an absolute path.
_OBJECT_STORES = {"s3", "gs", "gcs", "azure", "az", "abfs", "abfss", "wasbs", "oss"}


def read_lock(root: Path) -> dict[str, Any]:
    """dvc.lock as a mapping ({} when there is none yet)."""
    path = root / LOCK_FILE
    if not path.is_file():
        return {}
    # libyaml's safe loader where PyYAML has it: a tenth of the time on a 25-output dvc.lock
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(path.read_text(encoding="utf-8"))
    try:
        return dict(loader.get_single_data() or {})
    finally:
        loader.dispose()


def locked_stage(lock: dict[str, Any], stage: str) -> dict[str, Any]:
    """One stage's entry in dvc.lock ({} when it has none): cmd, deps, params, outs."""
    return dict((lock.get("stages") or {}).get(stage) or {})


def host() -> str:
    """The name of the machine the workspace is on (the `file://<host>` of the files in it)."""
    return socket.gethostname()


def parquet_schema(path: Path) -> list[dict[str, str]] | None:
    """[{name, type}] of a Parquet file's columns, from its footer; None if `path` is not Parquet.

    A directory (a DVC directory output) gets the schema its Parquet files share, as a partitioned
    table's files do; None when it has none or they differ, since one dataset has one schema.
    """
    if path.is_dir():
        schemas = {json.dumps(parquet_schema(part)) for part in sorted(path.rglob("*.parquet")) if part.is_file()}
        return json.loads(schemas.pop()) if len(schemas) == 1 else None
    if path.suffix != ".parquet" or not path.is_file():
        return None
    import pyarrow as pa  # here: the recorder and the CLI import this module, and pyarrow is slow to import
    import pyarrow.parquet as pq

    try:
        schema: pa.Schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return None  # not a readable Parquet file: the artifact is still recorded, without a schema
    return [{"name": field.name, "type": str(field.type)} for field in schema]


def schema_property(path: Path) -> str | None:
    """The Parquet schema as the canonical JSON text an artifact property holds (properties are scalars)."""
    schema = parquet_schema(path)
    return None if schema is None else json.dumps(schema, separators=(",", ":"))


def dataset_properties(
    root: Path, entry: dict[str, Any], column_lineage: dict[str, Any] | None = None
) -> dict[str, PropertyValue]:
    """What an artifact keeps of a dvc.lock entry beyond path, md5 and size: `nfiles` (a directory's),
    `schema` (a Parquet file's, JSON) and `column_lineage` (JSON of the mapping `column_lineage` gives its
    path: {output path: {column: [input field, ...]}})."""
    properties: dict[str, PropertyValue] = {}
    if "nfiles" in entry:
        properties["nfiles"] = entry["nfiles"]
    schema = schema_property(root / entry["path"])
    if schema is not None:
        properties["schema"] = schema
    mapping = (column_lineage or {}).get(entry["path"])
    if mapping:
        properties["column_lineage"] = json.dumps(mapping, sort_keys=True, separators=(",", ":"))
    return properties


def remote_object(remote_url: str, md5: str, host_name: str | None) -> tuple[str, str]:
    """(namespace, name) of a file pushed to the DVC remote at `remote_url`, by OpenLineage's naming: DVC 3
    stores it at <remote>/files/md5/<first 2 hex>/<the rest> (a directory's md5 keeps its `.dir`).

    `s3://bucket/prefix` gives (`s3://bucket`, `prefix/files/md5/..`); a local folder (a path or a
    file:// URL) gives (`file://<host_name>`, its absolute path), `file` where the host is not known.
    """
    parts = urlsplit(remote_url)
    key = f"files/md5/{md5[:2]}/{md5[2:]}"
    if len(parts.scheme) <= 1 or parts.scheme == "file":  # a path (or C: on Windows) or file:///path
        folder = (parts.path if parts.scheme == "file" else remote_url).rstrip("/")
        return (f"file://{host_name}" if host_name else "file"), f"{folder}/{key}"
    prefix = parts.path.strip("/") if parts.scheme in _OBJECT_STORES else parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}", f"{prefix}/{key}" if prefix else key


def remote_of_run_record(run_record: str, flow_run_id: str) -> str | None:
    """The DVC remote URL a run pushed to, from its run record (`<remote url>/runs/<flow run id>`, as the
    flow stores it); None when nothing was pushed (empty) or the record is elsewhere."""
    suffix = f"/runs/{flow_run_id}"
    return run_record.removesuffix(suffix) if run_record.endswith(suffix) else None
