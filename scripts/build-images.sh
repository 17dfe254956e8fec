#!/usr/bin/env bash
# Builds the stack's images from this checkout (cached: an unchanged tree rebuilds in seconds).
#
#   scripts/build-images.sh                 # agent alertmanager etcd prometheus registrator router
#   scripts/build-images.sh agent etcd      # only these
#
# Tags: pgha/<name>:dev, the names docker-compose.yml uses; PGHA_IMAGE_TAG=<tag> builds
# pgha/<name>:<tag> instead (then point PGHA_<NAME>_IMAGE at it). Extra `docker build`
# arguments: PGHA_BUILD_ARGS (e.g. "--build-arg PG_MAJOR=17"). Build logs:
# .cache/build/<name>.log (<name>-<tag>.log for another tag)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
tag=${PGHA_IMAGE_TAG:-dev}
logs="$here/.cache/build"
mkdir -p "$logs"
log() { printf 'build-images: %s\n' "$*" >&2; }

images=("$@")
[ ${#images[@]} -gt 0 ] || images=(agent alertmanager etcd prometheus registrator router)

docker info >/dev/null 2>&1 || { log "no Docker engine answers (run ./pgha setup, or start dockerd)"; exit 1; }
for base in debian:trixie-slim node:22-trixie-slim; do
  docker image inspect "$base" >/dev/null 2>&1 || { log "seeding base images"; scripts/seed-images.sh; break; }
done

# npm inside a build stage trusts what the host's npm trusts (a TLS-inspecting proxy).
cafile=$(npm config get cafile 2>/dev/null || true)
if [ ! -s .build-ca/ca.crt ] && [ -n "$cafile" ] && [ "$cafile" != null ] && [ -s "$cafile" ]; then
  cp "$cafile" .build-ca/ca.crt
fi

for name in "${images[@]}"; do
  dockerfile="$name/Dockerfile"
  [ -f "$dockerfile" ] || { log "no $dockerfile in this checkout"; exit 1; }
  start=$(date +%s)
  logfile="$logs/$name.log"
  [ "$tag" = dev ] || logfile="$logs/$name-$tag.log"
  # shellcheck disable=SC2086 # PGHA_BUILD_ARGS is a list of words
  if ! docker build ${PGHA_BUILD_ARGS:-} -f "$dockerfile" -t "pgha/$name:$tag" . >"$logfile" 2>&1; then
    log "pgha/$name:$tag failed; the end of $logfile:"
    tail -n 30 "$logfile" >&2
    exit 1
  fi
  log "pgha/$name:$tag built in $(($(date +%s) - start)) s"
done
