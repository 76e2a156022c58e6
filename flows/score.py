"""The `score` flow: a table of transactions scored by the production model version, each step a retried task.

It resolves the version in the ledger, fetches its model, preprocessor and training data from DVC's
storage by md5 (checked before anything loads them), and runs `python -m tasks.score` on the numeric
platform, as the stages run. The predictions are written as Parquet, tracked with `dvc add` and pushed to
the DVC remote, and recorded as a `Prediction` action tied to the version and to both tables by md5.
A version that is not in production is used only when named explicitly, and the record says its status.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.dvc_ops import first_line, remote_name
from flows.pipeline import stopped
from flows.retry import RETRIES, Rejected, TransientFailure
from flows.settings import resolve_settings
from lineage import registry
from lineage.diff import view
from lineage.entities import Action, Artifact, ArtifactType, Metadata, ModelStatus, PropertyValue
from lineage.objects import AlteredObject, ObjectError, Objects, configure_s3_remote
from lineage.predictions import prediction, scoring_files
from lineage.query import QueryError
from lineage.store import LedgerError, LedgerStore
from tasks import platform_env
from tasks.data import s3_storage_options
from tasks.score import FILES
from tasks.stage import EXIT_BAD_INPUT

SCORES_DIR = Path("data/scores")


@dataclass(frozen=True)
class Version:
    """The version that scores, and its files' md5s by role (tasks.score.FILES)."""

    name: str
    status: str
    md5s: dict[str, str]
    threads: int  # torch threads it was trained and evaluated with (tune.threads)


@task(name="resolve-version", task_run_name="resolve-version", **RETRIES)
def resolve_version(model_version: str, ledger_url: str | None) -> Version:
    """`production` is the version in production; any other name is that version, whatever its status."""
    try:
        with LedgerStore(ledger_url) as store:
            if model_version == "production":
                current = registry.production(store)
                if current is None:
                    raise Rejected("no model version is in production: name one with --model-version")
                model_version = current.name
            version = registry.get_version(store, model_version)
            files = scoring_files(store, version.name, FILES)
            params = view(store, version.name).params
    except (registry.RegistryError, QueryError) as error:
        raise Rejected(str(error)) from None
    except LedgerError as error:
        raise TransientFailure(str(error)) from error
    status = str(version.properties.get("status"))
    if status != ModelStatus.PRODUCTION:
        get_run_logger().warning("%s is %s, not production: scoring with it because it was named", version.name, status)
    threads = params.get("tune.threads") or (params.get("tune") or {}).get("threads") or 1
    return Version(version.name, status, {role: a.md5 for role, a in files.items()}, int(threads))


@task(name="fetch-model", task_run_name="fetch-model", **RETRIES)
def fetch_files(version: Version, remote: str | None, folder: str) -> dict[str, str]:
    """The version's files from the DVC cache or remote into `folder`, each only if it hashes to its md5."""
    objects = Objects(Path("."), remote)
    paths = {}
    for role, md5 in version.md5s.items():
        try:
            data = objects.read(md5)
        except AlteredObject as error:
            raise Rejected(f"{version.name}: {FILES[role]}: {error}; refusing to load it") from None
        except ObjectError as error:
            raise TransientFailure(f"{version.name}: {FILES[role]}: {error}") from error
        if data is None:
            raise Rejected(f"{version.name}: {FILES[role]} (md5 {md5}) is in neither the DVC cache nor the remote")
        path = Path(folder) / md5
        path.write_bytes(data)
        paths[role] = str(path)
    return paths


@task(name="score-rows", task_run_name="score-rows", **RETRIES)
def score_rows(table: str, output: str, version: Version, paths: dict[str, str]) -> int:
    """`python -m tasks.score` on the numeric platform; a bad table is one line, never retried."""
    files = [arg for role in FILES for arg in (f"--{role}", paths[role], f"--{role}-md5", version.md5s[role])]
    command = [sys.executable, "-m", "tasks.score", "--input", table, "--output", output, "--version", version.name]
    command += ["--threads", str(version.threads), *files]
    done = subprocess.run(command, env={**os.environ, **platform_env(dict(os.environ))}, capture_output=True, text=True)
    if done.returncode == EXIT_BAD_INPUT:
        raise Rejected(done.stderr.strip().splitlines()[-1].removeprefix("score: error: "))
    if done.returncode != 0:
        raise TransientFailure(
            f"tasks.score exited {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}"
        )
    get_run_logger().info(done.stdout.strip())
    return int(done.stdout.split()[1])


@task(name="track-predictions", task_run_name="track-predictions", **RETRIES)
def track_predictions(output: str, remote: str | None) -> str | None:
    """`dvc add` the predictions and push them to the remote; where the remote keeps them (None: no remote)."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        repo.scm_context.quiet = True  # no "git add" advice in the run's log: the ledger keeps the record
        try:
            repo.add(output)
        except Exception as error:
            raise Rejected(f"{output}: dvc add failed: {first_line(error)}") from None
        if not remote and not repo.config["core"].get("remote"):
            return None
        try:
            repo.push(targets=[output], remote=remote)
        except Exception as error:  # network, credentials, S3: worth a retry
            name = remote_name(repo, remote)
            raise TransientFailure(f"dvc push of {output} to remote '{name}' failed: {first_line(error)}") from error
    return Objects(Path("."), remote).location(_md5(output))


@task(name="record-prediction", task_run_name="record-prediction", **RETRIES)
def record_prediction(
    table: str,
    output: str,
    stored_at: str | None,
    version: Version,
    rows: int,
    start: dt.datetime,
    ledger_url: str | None,
) -> str:
    """Append the Prediction action, tied to the version, its files and both tables by md5; its id."""
    table_in = Artifact(artifact_type=ArtifactType.DATASET, source_uri=table, md5=_md5(table))
    properties: dict[str, PropertyValue] = {"remote": stored_at} if stored_at else {}
    table_out = Artifact(
        artifact_type=ArtifactType.DATASET,
        source_uri=output,
        md5=_md5(output),
        size=Path(output).stat().st_size,
        properties=properties,
    )
    metadata = Metadata(generated_by=str(flow_run.get_id() or "local"))
    with LedgerStore(ledger_url) as store:
        context = registry.get_version(store, version.name)
        files = scoring_files(store, version.name, FILES)
        records = prediction(context, files, table_in, table_out, rows, start, dt.datetime.now(dt.UTC), metadata)
        store.append(records)
    return next(record.id for record in records if isinstance(record, Action))


def _md5(uri: str) -> str:
    """The md5 of a file's bytes (as DVC records a file), local or s3://."""
    import fsspec

    digest = hashlib.md5()
    options = s3_storage_options() if uri.startswith("s3://") else {}
    with fsspec.open(uri, "rb", **options) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@flow(name="score", log_prints=True)
def score(
    table: str,
    output: str | None = None,
    model_version: str = "production",
    remote: str | None = None,
    aws_credentials_block: str | None = None,
    lineage_db_block: str | None = None,
) -> State[Any]:
    """Score a table of transactions with the production model version (or one named), push the predictions
    and record them in the ledger."""
    start = dt.datetime.now(dt.UTC)
    settings = resolve_settings(remote, aws_credentials_block, lineage_db_block, None, None)
    configure_s3_remote()
    try:
        version = resolve_version(model_version, settings.ledger_url)
        output = output or str(SCORES_DIR / f"{Path(table.split('?')[0]).stem}.{version.name}.parquet")
        with tempfile.TemporaryDirectory(prefix="score-") as folder:
            paths = fetch_files(version, settings.remote, folder)
            rows = score_rows(table, output, version, paths)
        stored_at = track_predictions(output, settings.remote)
        action = record_prediction(table, output, stored_at, version, rows, start, settings.ledger_url)
    except Exception as error:  # each task's own failure, after its retries: one line, the run Failed
        return stopped(str(error))
    summary = f"scored {rows} rows of {table} with {version.name} ({version.status}) into {output}"
    create_markdown_artifact(
        key="score-summary",
        markdown=f"**{summary}**\n\n- stored at: {stored_at or 'no DVC remote'}\n- ledger: Prediction `{action}`"
        f" (`lineage query {output}` shows what made it)",
        description="What this scoring run did",
    )
    return Completed(message=summary)


if __name__ == "__main__":
    # `python -m flows.score TABLE [--output PATH] [--model-version NAME]`: one scoring run on this checkout.
    parser = argparse.ArgumentParser(description=score.description)
    parser.add_argument("table", help="transactions to score: CSV, XLSX or Parquet, a path or s3:// URI")
    parser.add_argument("--output", default=None, help=f"the predictions' path (default: under {SCORES_DIR}/)")
    parser.add_argument("--model-version", default="production", help="a version's name (default: production)")
    parser.add_argument("--remote", default=None, help="DVC remote to read the model from and push to")
    parser.add_argument("--lineage-db-block", default=None, help="Prefect Secret block holding LINEAGE_DB_URL")
    arguments = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    final = score(
        arguments.table, arguments.output, arguments.model_version, arguments.remote,
        lineage_db_block=arguments.lineage_db_block, return_state=True,
    )  # fmt: skip
    print(final.message)
    sys.exit(0 if final.is_completed() else 1)
