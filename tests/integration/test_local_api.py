"""`python -m flows.pipeline` without PREFECT_API_URL starts Prefect's temporary API; when that API does not
start in time (forced here with a 1 s timeout, as a loaded machine does with the default), the command ends
in one line saying what to do, exit status 1, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("module", "command"), [("flows.pipeline", "pipeline"), ("flows.reproduce", "reproduce")])
def test_a_temporary_api_that_does_not_start_is_one_line(tmp_path: Path, module: str, command: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),  # no profile, no server database of anyone else's
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",  # Prefect's own "Starting temporary server" info lines
    }
    done = subprocess.run(
        [sys.executable, "-m", module], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"{command}: error: the temporary Prefect API did not start within 1 s; raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a server (`prefect server start`) and set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api"
    ]
    assert not list(tmp_path.glob("lineage.db*"))  # nothing ran: no ledger was opened
