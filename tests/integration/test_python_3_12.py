"""Python 3.12: `make` builds the runtime environment, every module imports, the unit tests pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.other_python import check_python


@pytest.mark.integration
def test_make_builds_the_runtime_environment_and_the_unit_tests_pass(tmp_path: Path) -> None:
    check_python("3.12", tmp_path)
