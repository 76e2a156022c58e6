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
from flows.settings import command_line_run, resolve_settings
from lineage import registry
from lineage.diff import view
from lineage.entities import Action, Artifact, ArtifactType, Context, Metadata, ModelStatus, PropertyValue
from lineage.objects import AlteredObject, MissingObject, ObjectError, Objects, configure_s3_remote
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
    """The version that scores, its files by role (tasks.score.FILES), as the ledger records them."""

    context: Context
    files: dict[str, Artifact]
    threads: int  # torch threads it was trained and evaluated with (tune.threads)

    @property
    def name(self) -> str:
        return self.context.name

    @property
    def md5s(self) -> dict[str, str]:
        return {role: artifact.md5 for role, artifact in self.files.items()}


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
    status = version.properties.get("status")
    if status != ModelStatus.PRODUCTION:
        get_run_logger().warning("%s is %s, not production: scoring with it because it was named", version.name, status)
    threads = params.get("tune.threads") or (params.get("tune") or {}).get("threads") or 1
    return Version(version, files, int(threads))


@task(name="fetch-model", task_run_name="fetch-model", **RETRIES)
def fetch_files(version: Version, remote: str | None, folder: str) -> dict[str, str]:
    """The version's files from the DVC cache or remote into `folder`, each only if it hashes to its md5."""
    try:
        found = Objects(Path("."), remote).read_artifacts(version.files)
    except (AlteredObject, MissingObject) as error:
        raise Rejected(f"{version.name}: {error}; refusing to load it") from None
    except ObjectError as error:  # the remote could not be read: worth a retry
        raise TransientFailure(f"{version.name}: {error}") from error
    paths = {}
    for role, data in found.items():
        paths[role] = str(Path(folder) / version.files[role].md5)
        Path(paths[role]).write_bytes(data)
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


@dataclass(frozen=True)
class Stored:
    """The predictions as DVC tracks them: their md5 and size, and where the remote keeps them."""

    md5: str
    size: int
    remote: str | None  # None: no remote is configured


@task(name="track-predictions", task_run_name="track-predictions", **RETRIES)
def track_predictions(output: str, remote: str | None) -> Stored:
    """`dvc add` the predictions and push them to the remote."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        repo.scm_context.quiet = True  # no "git add" advice in the run's log: the ledger keeps the record
        try:
            (stage,) = repo.add(output)
        except Exception as error:
            raise Rejected(f"{output}: dvc add failed: {first_line(error)}") from None
        md5 = str(stage.outs[0].hash_info.value)  # what DVC hashed, not a second read of the file
        size = Path(output).stat().st_size
        if not remote and not repo.config["core"].get("remote"):
            return Stored(md5, size, None)
        try:
            repo.push(targets=[output], remote=remote)
        except Exception as error:  # network, credentials, S3: worth a retry
            name = remote_name(repo, remote)
            raise TransientFailure(f"dvc push of {output} to remote '{name}' failed: {first_line(error)}") from error
    return Stored(md5, size, Objects(Path("."), remote).location(md5))


@task(name="record-prediction", task_run_name="record-prediction", **RETRIES)
def record_prediction(
    table: str, output: str, stored: Stored, version: Version, rows: int, start: dt.datetime, ledger_url: str | None
) -> str:
    """Append the Prediction action, tied to the version, its files and both tables by md5; its id."""
    table_in = Artifact(artifact_type=ArtifactType.DATASET, source_uri=table, md5=_md5(table))
    properties: dict[str, PropertyValue] = {"remote": stored.remote} if stored.remote else {}
    table_out = Artifact(
        artifact_type=ArtifactType.DATASET, source_uri=output, md5=stored.md5, size=stored.size, properties=properties
    )
    metadata = Metadata(generated_by=str(flow_run.get_id() or "local"))
    records = prediction(
        version.context,
        files=version.files,
        table_in=table_in,
        table_out=table_out,
        rows=rows,
        start=start,
        end=dt.datetime.now(dt.UTC),
        metadata=metadata,
    )
    with LedgerStore(ledger_url) as store:
        store.append(records)
    return next(record.id for record in records if isinstance(record, Action))


def _md5(uri: str) -> str:
    """The md5 of a file's bytes (as DVC records a file), local or s3://."""
    import fsspec

    options = s3_storage_options() if uri.startswith("s3://") else {}
    with fsspec.open(uri, "rb", **options) as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


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
        stored = track_predictions(output, settings.remote)
        action = record_prediction(table, output, stored, version, rows, start, settings.ledger_url)
    except Exception as error:  # each task's own failure, after its retries: one line, the run Failed
        return stopped(str(error))
    summary = (
        f"scored {rows} rows of {table} with {version.name} ({version.context.properties.get('status')}) into {output}"
    )
    create_markdown_artifact(
        key="score-summary",
        markdown=f"**{summary}**\n\n- stored at: {stored.remote or 'no DVC remote'}\n- ledger: Prediction `{action}`"
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
    with command_line_run("score"):
        final = score(
            arguments.table, arguments.output, arguments.model_version, arguments.remote,
            lineage_db_block=arguments.lineage_db_block, return_state=True,
        )  # fmt: skip
    print(final.message)
    sys.exit(0 if final.is_completed() else 1)
