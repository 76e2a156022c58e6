"""What a run is configured with, resolved once when it starts: secrets from Prefect blocks (read at run
time, so flow parameters carry only block names), the S3 remote the worker image names, and the
environment each stage runs with."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import cast

from prefect.runtime import flow_run

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

    def stage_env(self, features_remote: str | None = None) -> dict[str, str]:
        """What a stage's environment adds to this process's: the tune stage's settings (tasks/tune_settings.py)."""
        settings = {
            TUNE_RUN_ID_ENV: str(flow_run.get_id() or ""),  # the study's name; a retried stage reuses it
            TUNE_TRIAL_DEPLOYMENT_ENV: self.tune_trial_deployment,
            OPTUNA_STORAGE_URL_ENV: self.optuna_storage_url,
            OPTUNA_STORAGE_BLOCK_ENV: self.optuna_storage_block,
            TUNE_FEATURES_REMOTE_ENV: features_remote,
        }
        return {name: value for name, value in settings.items() if value}


def resolve_settings(
    remote: str | None,
    aws_credentials_block: str | None,
    lineage_db_block: str | None,
    tune_trial_deployment: str | None,
    optuna_storage_block: str | None,
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
