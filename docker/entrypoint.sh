#!/bin/sh
# Entrypoint of the worker image: one line naming the image, then the command it was given
# (Prefect's Docker worker passes the flow-run command as arguments).
set -eu

# Only these two variables, never an environment dump: the environment carries AWS credentials and
# the Prefect API key. stderr, so the command's own stdout stays clean.
echo "retail-lineage worker image: revision ${IMAGE_REVISION:-unknown}, uri ${IMAGE_URI:-unknown}" >&2

exec "$@"
