#!/usr/bin/env bash
# Stops and removes the compose stack's containers and network (Prometheus and Alertmanager too).
# Data volumes and .env are kept unless --volumes is given.
#
#   scripts/stack-down.sh [--volumes]        (or PGHA_VOLUMES=1)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
env_file="${PGHA_ENV_FILE:-$here/.env}"
extra=()
[ "${PGHA_VOLUMES:-0}" = 1 ] && extra+=(--volumes)
for arg in "$@"; do
  case "$arg" in
    -v | --volumes) extra+=(--volumes) ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "stack-down: unknown argument $arg (accepted: --volumes)" >&2; exit 2 ;;
  esac
done

args=()
if [ -f "$env_file" ]; then args=(--env-file "$env_file"); fi
# Interpolation needs these to be set even to tear down; any value does.
for var in POSTGRES_PASSWORD REPLICATION_PASSWORD SUPERUSER_PASSWORD RESTAPI_PASSWORD DOCKER_GID; do
  if [ -z "${!var:-}" ] && ! { [ -f "$env_file" ] && grep -q "^$var=" "$env_file"; }; then export "$var=unused"; fi
done
scripts/compose.sh "${args[@]}" --profile monitoring down --remove-orphans "${extra[@]}"
if [ ${#extra[@]} -gt 0 ]; then
  echo "pgha: stack removed with its data volumes; $env_file kept" >&2
else
  echo "pgha: stack stopped; data volumes kept (scripts/stack-down.sh --volumes deletes them)" >&2
fi
