"""The reproducibility fixture that travels: the md5 of every output of a small-params run of all six stages,
made on the numeric platform and committed, one table per CPU vendor (tests/fixtures/small_pipeline_md5.<vendor>.json,
with the platform that made it: Intel's and AMD's tune outputs still differ), and compared by
tests/integration/test_platform_fixture.py on whatever machine runs the tests with its vendor's table.

`python -m tests.platform_fixture` remakes this vendor's table from this working tree, in a scratch clone: run it,
and commit the table, after a change meant to change outputs (the same change re-locks dvc.lock); the other
vendor's table is then stale until remade on such a CPU.
`python -m tests.platform_fixture --vendor-split` shows what the fixture is for: at the table's params, the
platform as it was before issue 36 (BEFORE, below), run with MKL as on this CPU and with MKL
dispatching as on an Intel CPU (tests/fake_intel), and the outputs in which the two differ.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from lineage.reproduce import PlatformComparison, first_difference, this_platform
from tasks.numeric_platform import cpuinfo
from tests.conftest import REPO, run, set_params, snapshot, stage_env

FIXTURES = REPO / "tests" / "fixtures"
# conftest's SMALL, with three batches of two trials (so the last is tuned against told ones and may be pruned).
PARAMS: dict[str, dict[str, object]] = {
    "data": {"rows": 20_000},
    "tune": {"n_trials": 6, "max_epochs": 3, "patience": 2, "trial_rows": 3000, "baseline_max_iter": 20},
    "inference": {"shap_background": 50, "shap_explained": 100},
    "fairness": {"max_error_ratio": 2.0},
    "gates": {"accuracy": {"max_ratio": 1.25}},
}


# tasks/__init__.py as it was before issue 36; each replacement must apply, or the benchmark stops.
BEFORE = [
    ('MKL_BRANCH = "COMPATIBLE,STRICT"', 'MKL_BRANCH = "AVX2,STRICT"'),
    ('    "OMP_WAIT_POLICY": "PASSIVE",\n', ""),
    ('    "ARROW_USER_SIMD_LEVEL": "AVX2",', ""),
    (
        "def mkl_refusal() -> str | None:\n",
        "def mkl_refusal() -> str | None:\n    return None  # no such check before\n",
    ),
]


def run_small_pipeline(
    origin: Path, clone: Path, env: dict[str, str] | None = None, patches: list[tuple[str, str]] | None = None
) -> tuple[dict[str, str], str]:
    """A fresh clone of `origin` at `clone`, with the table's params (and `patches` replaced in its
    tasks/__init__.py), after one `dvc repro` with `env` added: every output's md5 in dvc.lock, in pipeline
    order, and the run's output."""
    run(clone.parent, "git", "clone", "-q", str(origin), str(clone))
    set_params(clone, **PARAMS)
    init = clone / "tasks" / "__init__.py"
    for old, new in patches or []:
        assert old in init.read_text(), f"tasks/__init__.py no longer holds {old.strip()!r}"
        init.write_text(init.read_text().replace(old, new))
    done = subprocess.run(
        ["dvc", "repro"], cwd=clone, env=stage_env(**(env or {})), capture_output=True, text=True, check=False
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"dvc repro exited {done.returncode}:\n{output[-4000:]}"
    return outputs(clone), output


def outputs(clone: Path) -> dict[str, str]:
    """Every output in the clone's dvc.lock and its md5, in pipeline order."""
    stages = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def fake_intel_env(intel: bool = True) -> dict[str, str]:
    """The environment under which stage processes' MKL dispatches as on an Intel CPU (tests/fake_intel), or with
    `intel` False as on another vendor's."""
    import torch

    nm = shutil.which("nm")
    assert nm is not None, "nm (binutils) is needed to find MKL's vendor checks in libtorch_cpu.so"
    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    listed = subprocess.run([nm, "--defined-only", str(library)], capture_output=True, text=True, check=True).stdout
    wanted = ("MKL_Get_Version_String", "mkl_serv_intel_cpu_true", "mkl_serv_intel_cpu")
    found = {parts[2]: parts[0] for parts in map(str.split, listed.splitlines()) if len(parts) == 3}
    missing = [name for name in wanted if name not in found]
    assert not missing, f"{library} has no symbol {', '.join(missing)}: another MKL build; update tests/fake_intel"
    offsets = ",".join(found[name] for name in wanted)
    faked = {"FAKE_INTEL_MKL": offsets, "PYTHONPATH": str(REPO / "tests" / "fake_intel")}
    return faked if intel else faked | {"FAKE_MKL_VENDOR": "other"}


def table_path(vendor: str | None = None) -> Path:
    """The table made on a CPU of `vendor` (this machine's by default): one per vendor, since Intel's and AMD's
    tune outputs still differ (docs/reproduction.md, "Across vendors")."""
    return FIXTURES / f"small_pipeline_md5.{vendor or cpuinfo('vendor_id') or 'unknown'}.json"


def load_table(vendor: str | None = None) -> dict[str, Any]:
    """The table of `vendor`'s CPUs (this machine's by default); a vendor with none fails, saying how to make it."""
    path = table_path(vendor)
    if not path.is_file():
        raise AssertionError(
            f"{path.relative_to(REPO)}: no table made on this vendor's CPU; make it here with "
            "`python -m tests.platform_fixture` from a committed checkout, and commit it"
        )
    table: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return table


def vendor_tables() -> dict[str, dict[str, Any]]:
    """Every vendor's table, by vendor."""
    return {
        path.name.split(".")[1]: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(FIXTURES.glob("small_pipeline_md5.*.json"))
    }


def mismatch(table: dict[str, Any], clone: Path, found: dict[str, str]) -> str | None:
    """None when every output has the table's md5; else what `lineage reproduce` would say: the first output
    that differs in pipeline order, what lies downstream of it, what else differs, and the platform diff."""
    wanted: dict[str, str] = table["outputs"]
    different = {path for path in wanted.keys() | found.keys() if wanted.get(path) != found.get(path)}
    if not different:
        return None
    stages = list(yaml.safe_load((clone / "dvc.lock").read_text())["stages"].values())
    first, downstream = first_difference(stages, different)
    first = first or sorted(different)[0]  # an output the table has and this run did not make
    made_on = table_path(table["made_on"]["cpu_vendor"])
    lines = [
        f"{len(different)} of {len(wanted)} outputs differ from {made_on.relative_to(REPO)}",
        f"first difference: {first}: {wanted.get(first, 'absent')} in the table, {found.get(first, 'absent')} here",
        f"downstream of it: {', '.join(p for p in downstream if p in different) or 'none'}",
    ]
    if alone := sorted(different - {first} - set(downstream)):
        lines.append(f"also different, on their own: {', '.join(alone)}")
    return "\n".join(lines + PlatformComparison(table["made_on"], this_platform(clone)).lines(ok=False))


def vendor_split() -> None:
    """The platform before issue 36 at the table's params, MKL as on this CPU and as on an Intel CPU."""
    with tempfile.TemporaryDirectory() as scratch:
        origin = snapshot(Path(scratch) / "origin")
        here, _ = run_small_pipeline(origin, Path(scratch) / "here", patches=BEFORE)
        intel, _ = run_small_pipeline(origin, Path(scratch) / "intel", fake_intel_env(), BEFORE)
    differ = [path for path in here if here[path] != intel[path]]
    print("before issue 36 (MKL_CBWR=AVX2,STRICT), MKL as on this CPU against MKL as on an Intel CPU:")
    print(f"{len(differ)} of {len(here)} outputs differ: {', '.join(differ) or 'none'}")


def main() -> None:
    """Remake the table from this working tree and print what changed."""
    if sys.argv[1:] == ["--vendor-split"]:
        vendor_split()
        return
    with tempfile.TemporaryDirectory() as scratch:
        origin = snapshot(Path(scratch) / "origin")
        clone = Path(scratch) / "clone"
        found, _ = run_small_pipeline(origin, clone)
        made_on = this_platform(clone)
    if made_on is None:
        sys.exit("platform_fixture: python -m tasks.numeric_platform failed; no table written")
    path = table_path(made_on["cpu_vendor"])
    old = load_table(made_on["cpu_vendor"])["outputs"] if path.is_file() else {}
    table = {"params": PARAMS, "made_on": made_on, "outputs": found}
    path.write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    changed = [name for name in found if old.get(name) != found[name]]
    print(f"{path.relative_to(REPO)}: {len(found)} outputs, {len(changed)} changed: {', '.join(changed) or 'none'}")
    print(f"made on {made_on['cpu']} ({made_on['cpu_vendor']}), MKL branch {made_on['mkl_cnr']}")


if __name__ == "__main__":
    main()
