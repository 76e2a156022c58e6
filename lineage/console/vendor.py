"""Fetch the console's front-end libraries from the npm registry again (`make vendor`): `npm pack` each
package of static/vendor.json at its pinned version, check the tarball against the registry's integrity
hash, extract the listed files into static/ and record their sha256 (which a unit test holds them to)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

STATIC = Path(__file__).parent / "static"
MANIFEST = STATIC / "vendor.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def vendor() -> dict[str, str]:
    """Refresh every vendored file; return file name -> sha256."""
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for package in manifest["packages"]:
            spec = f"{package['name']}@{package['version']}"
            packed = (
                subprocess.run(
                    ["npm", "pack", spec, "--silent"], cwd=scratch, capture_output=True, text=True, check=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            tarball = Path(scratch) / packed
            algorithm, expected = package["integrity"].split("-", 1)
            found = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
            if found != expected:
                raise SystemExit(f"vendor: {spec}: the tarball's {algorithm} is not the registry's integrity")
            with tarfile.open(tarball) as archive:
                for member, name in package["files"].items():
                    extracted = archive.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"vendor: {spec} has no file {member}")
                    (STATIC / name).write_bytes(extracted.read())
                    digests[name] = sha256(STATIC / name)
    manifest["sha256"] = dict(sorted(digests.items()))
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return digests


if __name__ == "__main__":
    for name, digest in vendor().items():
        print(f"{digest}  lineage/console/static/{name}")
