"""What a run is configured with, resolved once when it starts: secrets from Prefect blocks (read at run
time, so flow parameters carry only block names), the S3 remote the worker image names, the
environment each stage runs with, and the temporary Prefect API of a run started from the command line."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from prefect.runtime import flow_run

from tasks.engine import SCHEDULER_ENV
from tasks.tune_settings import (
    OPTUNA_STORAGE_BLOCK_ENV,
    OPTUNA_STORAGE_URL_ENV,
    TUNE_FEATURES_REMOTE_ENV,
    TUNE_RUN_ID_ENV,
    TUNE_TRIAL_DEPLOYMENT_ENV,
)


@dataclass(frozen=True)
class RunSettings:
    """One run's settings. URLs that carry a password stay out of repr, and so out of logs."""

    remote: str | None = None  # DVC remote to pull from and push to; None: the repository's default
    ledger_url: str | None = field(default=None, repr=False)  # None: LINEAGE_DB_URL, else sqlite:///lineage.db
    tune_trial_deployment: str | None = None  # tuning trials run as flow runs of this deployment
    optuna_storage_url: str | None = field(default=None, repr=False)  # the Optuna storage those trials share
    optuna_storage_block: str | None = None  # the Secret block holding it, handed on to the workers
    dask_scheduler: str | None = field(default=None, repr=False)  # None: DASK_SCHEDULER_ADDRESS, else this machine

    def stage_env(self, features_remote: str | None = None) -> dict[str, str]:
        """What a stage's environment adds to this process's: the tune stage's settings (tasks/tune_settings.py)
        and the Dask cluster (tasks/engine.py)."""
        settings = {
            TUNE_RUN_ID_ENV: str(flow_run.get_id() or ""),  # the study's name; a retried stage reuses it
            TUNE_TRIAL_DEPLOYMENT_ENV: self.tune_trial_deployment,
            OPTUNA_STORAGE_URL_ENV: self.optuna_storage_url,
            OPTUNA_STORAGE_BLOCK_ENV: self.optuna_storage_block,
            TUNE_FEATURES_REMOTE_ENV: features_remote,
            SCHEDULER_ENV: self.dask_scheduler,
        }
        return {name: value for name, value in settings.items() if value}


def resolve_settings(
    remote: str | None,
    aws_credentials_block: str | None,
    lineage_db_block: str | None,
    tune_trial_deployment: str | None,
    optuna_storage_block: str | None,
    dask_scheduler: str | None = None,
) -> RunSettings:
    """The run's settings from the flow's parameters and the Prefect blocks they name."""
    if aws_credentials_block:
        export_aws_credentials(aws_credentials_block)
    return RunSettings(
        remote=remote,
        ledger_url=read_secret(lineage_db_block) if lineage_db_block else None,
        tune_trial_deployment=tune_trial_deployment,
        optuna_storage_url=read_secret(optuna_storage_block) if optuna_storage_block else None,
        optuna_storage_block=optuna_storage_block,
        dask_scheduler=dask_scheduler,
    )


def read_secret(block: str) -> str:
    """The value of a Prefect Secret block (a URL with a password, say)."""
    from prefect.blocks.system import Secret

    return str(cast(Secret[str], Secret.load(block)).get())


def export_aws_credentials(block: str) -> None:
    """Put a prefect-aws AwsCredentials block into this process's environment, where the AWS SDK looks:
    DVC's pull, push and `import-url` updates all read it, in this process and in its dvc commands."""
    from prefect_aws import AwsCredentials

    credentials = cast(AwsCredentials, AwsCredentials.load(block))  # sync call: the block itself
    secret = credentials.aws_secret_access_key
    values = {
        "AWS_ACCESS_KEY_ID": credentials.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else None,
        "AWS_SESSION_TOKEN": credentials.aws_session_token,
        "AWS_DEFAULT_REGION": credentials.region_name,
    }
    os.environ.update({key: value for key, value in values.items() if value})


# Prefect's default (20 s) is less than its temporary API takes to start on a loaded 2-core machine.
LOCAL_API_STARTUP_SECONDS = 120
_LOCAL_API_TIMED_OUT = "Timed out while attempting to connect to ephemeral Prefect API server"


@contextmanager
def command_line_run(command: str) -> Iterator[None]:
    """Around a flow called by `python -m flows.<name>`: the temporary Prefect API (no PREFECT_API_URL) given
    LOCAL_API_STARTUP_SECONDS to start unless the user set PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    and, if it still does not start, one line on stderr and exit status 1 instead of Prefect's traceback."""
    from prefect.settings import (
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # the server it starts has no network
    chosen = "startup_timeout_seconds" in get_current_settings().server.ephemeral.model_fields_set
    ours = {} if chosen else {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: LOCAL_API_STARTUP_SECONDS}
    with temporary_settings(updates=ours):
        seconds = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        try:
            yield
        except RuntimeError as error:
            if not str(error).startswith(_LOCAL_API_TIMED_OUT):
                raise
            exited = re.search(r"process exited with code (-?\d+)", str(error))
            print(
                f"{command}: error: the temporary Prefect API did not start within {seconds} s"
                + (f" (it exited with code {exited[1]})" if exited else "")
                + "; raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a server"
                " (`prefect server start`) and set PREFECT_API_URL=http://127.0.0.1:4200/api",
                file=sys.stderr,
            )
            sys.exit(1)
