"""Files the ledger names by md5, read back from DVC's storage: the workspace's DVC cache first, then the
DVC remote (where every run pushed its outputs). Bytes reach no one before they hash to the md5 they
were asked for, so a page or an evidence pack can only show what the ledger recorded.

Also the run records the flow stores beside the objects in the remote (`runs/<flow run id>/`), and the
ledger's **anchors**: its head (record count and hash) as it stood after each decision and each pipeline
run, under `ledger-heads/<ledger id>/<count>-<hash>.json`, a name no later anchor reuses (so a ledger cut
short and grown again cannot overwrite one). `lineage verify` fetches the latest and checks that the ledger
still holds that record with that hash: what someone who can write the database cannot fake.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

from common.redact import redact_text, redact_url
from lineage.entities import Artifact
from lineage.errors import LineageError
from lineage.store import Head

MD5 = re.compile(r"[0-9a-f]{32}")
ANCHORS = "ledger-heads"
_ANCHOR_NAME = re.compile(r"(\d{12})-([0-9a-f]{64})\.json")


class ObjectError(LineageError):
    """A stored object that does not hash to its md5, or a remote that cannot be read; one line."""


class AlteredObject(ObjectError):
    """A stored object whose bytes do not hash to the md5 it is stored under: never used."""


class MissingObject(ObjectError):
    """An object in neither the DVC cache nor the remote."""


class Objects:
    """DVC's storage for the repository at `root` (its cache and its remote `remote`, default the default).
    Opening DVC is deferred to the first read that needs it; a folder without DVC has no objects."""

    def __init__(self, root: Path = Path("."), remote: str | None = None) -> None:
        self.root = root
        self.remote_name = remote
        self._lock = threading.Lock()  # DVC's filesystems are not documented as thread-safe
        self._opened = False
        self._cache: Path | None = None
        self._remote: Any = None
        self.remote_url: str | None = None

    def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        if not (self.root / ".dvc").is_dir():
            return
        from dvc.exceptions import DvcException
        from dvc.repo import Repo

        try:
            with Repo(str(self.root)) as repo:
                self._cache = Path(repo.cache.local.path)
                name = self.remote_name or str(repo.config["core"].get("remote", ""))
                if name:
                    self._remote = repo.cloud.get_remote(name)
                    # Only ever shown (pages, messages, OpenLineage names): reads go through self._remote.
                    self.remote_url = redact_url(str(self._remote.fs.unstrip_protocol(self._remote.path)))
        except DvcException as error:
            raise ObjectError(redact_text(f"cannot open DVC's storage in {self.root}: {error}")) from None

    def read(self, md5: str) -> bytes | None:
        """The file whose md5 is `md5` (not a directory's `.dir` listing), or None where neither the cache nor
        the remote holds it; ObjectError if the bytes found hash to something else."""
        return self._checked(md5, md5, "object") if MD5.fullmatch(md5) else None

    def read_directory(self, md5: str) -> list[dict[str, Any]] | None:
        """The listing of the directory whose md5 is `md5` (`<md5>.dir`: each file's relpath and md5), or None
        where neither the cache nor the remote holds it; AlteredObject if the listing hashes to something else."""
        digest = md5.removesuffix(".dir")
        if not md5.endswith(".dir") or not MD5.fullmatch(digest):
            return None
        data = self._checked(md5, digest, "listing")
        if data is None:
            return None
        try:
            listing = json.loads(data)
        except ValueError:
            listing = None
        if not isinstance(listing, list) or not all(isinstance(e, dict) and "md5" in e for e in listing):
            raise AlteredObject(f"the stored listing {md5} is not a DVC directory listing")
        return listing

    def read_artifacts(self, artifacts: dict[str, Artifact]) -> dict[str, bytes]:
        """Each artifact's bytes, by the same keys, checked against its md5. The error names the artifact's
        path: AlteredObject where the bytes hash to something else, MissingObject where neither has them."""
        found: dict[str, bytes] = {}
        for key, artifact in artifacts.items():
            try:
                data = self.read(artifact.md5)
            except ObjectError as error:
                raise type(error)(f"{artifact.source_uri}: {error}") from None
            if data is None:
                where = f"{artifact.source_uri} (md5 {artifact.md5})"
                raise MissingObject(f"{where} is in neither the DVC cache nor the remote")
            found[key] = data
        return found

    def remote(self) -> str | None:
        """The remote's URL (e.g. `s3://bucket/prefix`), or None where there is none."""
        with self._lock:
            self._open()
        return self.remote_url

    def location(self, md5: str) -> str | None:
        """Where the remote keeps the object (a URL; a directory's listing for a `.dir` md5), if there is a remote."""
        with self._lock:
            self._open()
        valid = MD5.fullmatch(md5.removesuffix(".dir"))
        return f"{self.remote_url}/files/md5/{md5[:2]}/{md5[2:]}" if self.remote_url and valid else None

    def run_record(self, flow_run_id: str, name: str) -> bytes | None:
        """A file the flow stored beside the run record in the remote (e.g. ledger-head.json), or None."""
        if not re.fullmatch(r"[\w.-]+", flow_run_id) or not re.fullmatch(r"[\w.-]+", name):
            return None
        with self._lock:
            self._open()
            return self._from_remote(["runs", flow_run_id, name])

    def _anchors(self, ledger_id: str) -> tuple[Any, str] | None:
        """The remote's filesystem and the folder of ledger `ledger_id`'s anchors, or None without a remote."""
        self._open()
        if self._remote is None:
            return None
        return self._remote.fs, self._remote.fs.join(self._remote.path, ANCHORS, ledger_id)

    def publish_anchor(self, ledger_id: str, head: Head, by: str) -> str | None:
        """Store `head` as an anchor of ledger `ledger_id` in the remote; its URL, or None where there is no remote."""
        with self._lock:
            if (place := self._anchors(ledger_id)) is None:
                return None
            fs, folder = place
            path = fs.join(folder, f"{head.count:012d}-{head.head_hash}.json")
            body = {"ledger_id": ledger_id, "record_count": head.count, "head_hash": head.head_hash, "published_by": by}
            try:
                fs.makedirs(folder, exist_ok=True)
                fs.pipe_file(path, json.dumps(body, sort_keys=True).encode())
            except OSError as error:
                raise ObjectError(f"cannot store the ledger's anchor in {self.remote_url}: {error}") from None
            return str(fs.unstrip_protocol(path))

    def anchors(self, ledger_id: str) -> list[tuple[Head, str]]:
        """Every anchor of ledger `ledger_id` in the remote, by record count, each with its URL; none where there
        is no remote or no anchor yet."""
        with self._lock:
            if (place := self._anchors(ledger_id)) is None:
                return []
            fs, folder = place
            try:
                names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)]
            except FileNotFoundError:
                return []
            except OSError as error:
                raise ObjectError(f"cannot list the ledger's anchors in {self.remote_url}: {error}") from None
        found = sorted((int(m[1]), m[2]) for name in names if (m := _ANCHOR_NAME.fullmatch(name)))
        where = f"{self.remote_url}/{ANCHORS}/{ledger_id}"
        return [(Head(count, digest), f"{where}/{count:012d}-{digest}.json") for count, digest in found]

    def _checked(self, name: str, digest: str, what: str) -> bytes | None:
        """The bytes stored under `name` (an md5; a listing's ends in `.dir`) in the cache, else the remote, or
        None where neither holds them; AlteredObject if they do not hash to `digest`."""
        with self._lock:
            self._open()
            data = self._from_cache(name)
            if data is None:
                data = self._from_remote(["files", "md5", name[:2], name[2:]])
        if data is not None and (found := hashlib.md5(data).hexdigest()) != digest:
            raise AlteredObject(f"the stored {what} {name} is altered: its bytes hash to {found}")
        return data

    def _from_cache(self, md5: str) -> bytes | None:
        if self._cache is None:
            return None
        path = self._cache / md5[:2] / md5[2:]
        return path.read_bytes() if path.is_file() else None

    def _from_remote(self, parts: list[str]) -> bytes | None:
        if self._remote is None:
            return None
        fs = self._remote.fs
        try:
            return bytes(fs.cat_file(fs.join(self._remote.path, *parts)))
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ObjectError(redact_text(f"cannot read {'/'.join(parts)} from {self.remote_url}: {error}")) from None


def configure_s3_remote(root: Path = Path(".")) -> None:
    """Apply DVC_REMOTE_S3_URL and DVC_REMOTE_S3_ENDPOINTURL to the `s3` remote (workspace-local config).

    The worker image carries no .dvc/config.local; the deployment (or the endpoint's task definition)
    hands bucket, prefix and endpoint in through these variables instead.
    """
    from dvc.repo import Repo

    overrides = {
        option: os.environ[variable]
        for option, variable in (("url", "DVC_REMOTE_S3_URL"), ("endpointurl", "DVC_REMOTE_S3_ENDPOINTURL"))
        if os.environ.get(variable)
    }
    if overrides:
        with Repo(str(root)) as repo, repo.config.edit("local") as config:
            config["remote"].setdefault("s3", {}).update(overrides)
