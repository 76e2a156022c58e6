"""A private key that others may read is refused by name, mode and fix, not with ssh-keygen's "No private key
found" (ssh-keygen ignores such a key of its own user). Real keys, made by ssh-keygen."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lineage.signatures import SignatureError, Signer
from tests.conftest import VENV_BIN


def _key(folder: Path, mode: int, public_half: bool = True) -> Path:
    key = folder / "alice-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)], check=True)
    key.chmod(mode)
    if not public_half:
        key.with_name(key.name + ".pub").unlink()
    return key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o777])
def test_a_key_others_may_read_or_write_is_refused_naming_its_mode_and_the_fix(tmp_path: Path, mode: int) -> None:
    key = _key(tmp_path, mode)
    with pytest.raises(SignatureError) as refused:
        Signer("alice", key).sign(b"a decision")
    assert str(refused.value) == (
        f"{key}: permissions {mode:04o} are too open for a private key (ssh-keygen ignores it); run chmod 600 {key}"
    )


def test_the_public_key_learnt_by_signing_says_the_same(tmp_path: Path) -> None:
    key = _key(tmp_path, 0o644, public_half=False)  # no .pub beside it: public_key() signs to learn it
    with pytest.raises(SignatureError, match=r"permissions 0644 are too open for a private key"):
        Signer("alice", key).public_key()


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_key_only_its_owner_reads_signs(tmp_path: Path, mode: int) -> None:
    key = _key(tmp_path, mode)
    armored, public = Signer("alice", key).sign(b"a decision")
    assert armored.startswith("-----BEGIN SSH SIGNATURE-----")
    assert public == Signer("alice", key).public_key()


def test_the_command_says_it_in_one_line(tmp_path: Path) -> None:
    key = _key(tmp_path, 0o644)
    done = subprocess.run(
        [VENV_BIN / "lineage", "init", "--db", f"sqlite:///{tmp_path / 'lineage.db'}", "--approver", "alice",
         "--key", str(key)],
        cwd=tmp_path, env={**os.environ, "SSH_AUTH_SOCK": ""}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"lineage: error: {key}: permissions 0644 are too open for a private key (ssh-keygen ignores it); "
        f"run chmod 600 {key}"
    ]
