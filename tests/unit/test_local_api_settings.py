"""How long a command-line run waits for Prefect's temporary API: flows' generous default, unless the user
chose a value (environment or Prefect profile). Read in a fresh process, as Prefect reads its settings once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.settings import LOCAL_API_STARTUP_SECONDS

PROBE = (
    "from flows.settings import command_line_run\n"
    "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as timeout\n"
    "print(timeout.value())\n"
    "with command_line_run('probe'):\n"
    "    print(timeout.value())\n"
    "print(timeout.value())\n"
)


def _waits(tmp_path: Path, profile: str | None = None, **chosen: str) -> list[str]:
    home = tmp_path / "prefect"
    home.mkdir()
    if profile is not None:
        (home / "profiles.toml").write_text(f'active = "mine"\n[profiles.mine]\n{profile}\n')
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**env, "PREFECT_HOME": str(home), **chosen},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout.split()


def test_a_command_line_run_gives_the_temporary_api_time_to_start(tmp_path: Path) -> None:
    assert LOCAL_API_STARTUP_SECONDS >= 60  # Prefect's 20 s timed out on a loaded 2-core machine
    assert _waits(tmp_path) == ["20", str(LOCAL_API_STARTUP_SECONDS), "20"]  # only around the run


@pytest.mark.parametrize(
    ("profile", "chosen"),
    [
        (None, {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "45"}),
        ('PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS = "45"', {}),
    ],
)
def test_the_users_own_value_is_kept(tmp_path: Path, profile: str | None, chosen: dict[str, str]) -> None:
    assert _waits(tmp_path, profile, **chosen) == ["45", "45", "45"]
