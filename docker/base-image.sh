#!/usr/bin/env bash
# Makes the worker image's base, python:3.11-slim-bookworm, available to `docker build` here: already
# present, pulled from Docker Hub, or, where Docker Hub does not answer, a stand-in built from Debian's
# packages under the same name (python and pip in /usr/local/bin, as in the official image).
#
# The stand-in carries this host's pip settings, so that docker/worker.Dockerfile builds unchanged on a
# machine whose package gateway intercepts TLS, or whose torch wheel comes from pip's find-links: the
# CA bundle pip uses here, and each local find-links folder served over HTTP on the Docker bridge (by a
# container of the stand-in itself, restarted with the daemon). Nothing names a host of its own: it reads
# `pip config list`. The stand-in is labelled as one, and so is every image built on it.
#
# Usage: docker/base-image.sh [IMAGE]   (IMAGE defaults to the Dockerfile's FROM)
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:-$(sed -n 's/^FROM \([^ ]*\).*/\1/p' docker/worker.Dockerfile | head -n 1)}
if docker image inspect "$base" >/dev/null 2>&1; then
  echo "base image $base: present" >&2
  exit 0
fi
if docker pull --quiet "$base" >/dev/null 2>&1; then
  echo "base image $base: pulled" >&2
  exit 0
fi
echo "base image $base: cannot be pulled; building a stand-in from Debian's packages" >&2

suite=$(sed -n 's/.*-\(bookworm\|bullseye\|trixie\)$/\1/p' <<<"$base")
python=$(sed -n 's/^python:\([0-9]*\.[0-9]*\).*/\1/p' <<<"$base")
[ -n "$suite" ] && [ -n "$python" ] || { echo "base-image.sh: cannot read a Python version and a Debian suite from $base" >&2; exit 1; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" >/dev/null
have=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$have" = "$python" ] || { echo "base-image.sh: Debian $suite has Python $have, not $python" >&2; exit 1; }
# The official image's layout: python, python3 and pip in /usr/local/bin.
chroot "$root" python3 -m venv /usr/local
# As Debian's slim images: no documentation, manual pages or translations, now or from later packages.
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
SLIM
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

# This host's pip settings, as `pip config list` prints them (key='value').
setting() { python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.$1='\(.*\)'$/\1/p" | tail -n 1; }
# The address containers reach this host at (Docker 20.10 leaves the default bridge's Gateway unset).
bridge=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}')
[ -n "$bridge" ] || bridge=$(ip -4 -o addr show "$(docker network inspect bridge \
  --format '{{index .Options "com.docker.network.bridge.name"}}')" | awk '{ sub("/.*", "", $4); print $4; exit }')
conf="[global]"
cert=$(setting cert)
if [ -n "$cert" ] && [ -f "$cert" ]; then
  cp "$cert" "$root/etc/ssl/certs/pip-ca-bundle.crt"
  conf+=$'\n'"cert = /etc/ssl/certs/pip-ca-bundle.crt"
fi
links=()
port=${FIND_LINKS_PORT:-8765}
for folder in $(setting find-links); do
  [ -d "$folder" ] || continue
  name="pip-find-links-$port"
  docker rm --force "$name" >/dev/null 2>&1 || true
  links+=("$name:$port:$folder")
  conf+=$'\n'"find-links = http://$bridge:$port/"$'\n'"trusted-host = $bridge"
  port=$((port + 1))
done
printf '%s\n' "$conf" >"$root/etc/pip.conf"

tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL org.opencontainers.image.description=\"stand-in for $base, built from Debian $suite by docker/base-image.sh\"" \
  --change 'CMD ["python3"]' \
  - "$base" >/dev/null

for link in "${links[@]}"; do
  IFS=: read -r name port folder <<<"$link"
  docker run --detach --name "$name" --restart always --publish "$bridge:$port:8000" \
    --volume "$folder:/srv:ro" "$base" python -m http.server 8000 --directory /srv >/dev/null
done
echo "base image $base: stand-in built ($(docker image inspect "$base" --format '{{.Size}}') bytes)" >&2
