"""Print the registry digest reference (`REPOSITORY@sha256:...`) of an image that was pushed.

    python deployments/image_digest.py REGISTRY/retail-lineage-worker:TAG

The `weekly` deployment runs this after its push step: the work pool then pulls the image by digest,
and the ledger records the digest of the image that ran, not a tag (a tag names whatever was pushed
under it last). The digest is the registry's (the manifest's), as Docker recorded it on push; an image
never pushed to that repository has none, which is an error.
"""

from __future__ import annotations

import sys

from docker.errors import DockerException
from prefect.utilities.dockerutils import parse_image_tag

import docker


def digest_reference(image: str) -> str:
    """`image`'s repository with the digest the registry gave it on push."""
    repository, _ = parse_image_tag(image)
    client = docker.from_env()
    try:
        digests = client.images.get(image).attrs.get("RepoDigests") or []
    finally:
        client.close()
    found = [d for d in digests if d.split("@", 1)[0] == repository]
    if not found:
        raise LookupError(f"{image}: no registry digest for {repository}; push it first (digests known: {digests})")
    return str(found[0])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python deployments/image_digest.py IMAGE")
    try:
        print(digest_reference(args[0]))
    except (LookupError, DockerException) as error:
        sys.exit(f"image_digest: {error}")


if __name__ == "__main__":
    main()
