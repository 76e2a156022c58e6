"""Benchmark: reproducing a model version against the run that made it. Target: reproduce <= 1.2 x run.

A scratch git copy of the project on the 541,909-row default runs the flow once (`python -m
flows.pipeline`, a temporary local Prefect API), then `lineage reproduce production` rebuilds that
model in a worktree from the commit, the run record's params and the remote, and compares hashes.
Both are timed as whole commands. `python -m bench.bench_reproduce [rows]`.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_stages import scratch_copy, stage_env
from bench.report import save_results, table
from lineage.entities import Context, ContextType, context_id
from lineage.registry import production
from lineage.store import LedgerStore

BIN = Path(sys.executable).parent
TARGET = 1.2


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    env = stage_env(PREFECT_SERVER_ANALYTICS_ENABLED="false")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        scratch_copy(work, rows)
        subprocess.run([*git, "add", "-A"], cwd=work, check=True)
        subprocess.run([*git, "commit", "-qm", "bench"], cwd=work, check=True)
        run = timed([str(BIN / "python"), "-m", "flows.pipeline"], work, env)
        with LedgerStore(f"sqlite:///{work / 'lineage.db'}") as store:
            version = production(store)
            assert version is not None, "the run promoted no model"
            run_id = context_id(ContextType.PIPELINE_RUN, str(version.properties["flow_run_id"]))
            context = store.latest([run_id])[run_id]
            assert isinstance(context, Context)
            started, ended = (dt.datetime.fromisoformat(str(context.properties[k])) for k in ("started", "ended"))
        reproduce = timed([str(BIN / "lineage"), "reproduce", "production"], work, env)
    flow_run = (ended - started).total_seconds()
    print(f"{rows:,} rows, model version {version.name}")
    print(f"original run: command {run:.1f} s, flow run as recorded {flow_run:.1f} s")
    print(f"reproduce:    command {reproduce:.1f} s (all artifacts matched)")
    print(f"ratio reproduce / original command {reproduce / run:.2f}, / recorded flow run {reproduce / flow_run:.2f}")
    print(f"target <= {TARGET}: {'met' if reproduce / run <= TARGET else 'MISSED'}")
    save_results(
        "bench_reproduce",
        f"Reproducing a model version ({rows:,} rows)",
        [
            table(
                ["target", "measured", "ratio (to the recorded flow run)"],
                [[f"reproducing a model <= {TARGET} x its run",
                  f"{reproduce:.1f} s vs the run's {run:.1f} s ({flow_run:.1f} s as recorded), all artifacts matched",
                  f"{reproduce / run:.2f} ({reproduce / flow_run:.2f})"]],
            )
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
