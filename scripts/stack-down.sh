#!/usr/bin/env bash
# Stops and removes the compose stack's containers and network (Prometheus and Alertmanager too).
# Data volumes and .env are kept unless --volumes is given; the backup repository
# (volume `backups`) is kept even then, unless --delete-backups names it too.
#
#   scripts/stack-down.sh [--volumes [--delete-backups]]        (or PGHA_VOLUMES=1)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
env_file="${PGHA_ENV_FILE:-$here/.env}"
extra=()
delete_backups=0
[ "${PGHA_VOLUMES:-0}" = 1 ] && extra+=(--volumes)
for arg in "$@"; do
  case "$arg" in
    -v | --volumes) extra+=(--volumes) ;;
    --delete-backups) delete_backups=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "stack-down: unknown argument $arg (accepted: --volumes, --delete-backups)" >&2; exit 2 ;;
  esac
done

args=()
if [ -f "$env_file" ]; then args=(--env-file "$env_file"); fi
# Interpolation needs these to be set even to tear down; any value does.
for var in POSTGRES_PASSWORD REPLICATION_PASSWORD SUPERUSER_PASSWORD RESTAPI_PASSWORD DOCKER_GID; do
  if [ -z "${!var:-}" ] && ! { [ -f "$env_file" ] && grep -q "^$var=" "$env_file"; }; then export "$var=unused"; fi
done
project=$(sed -n 's/^COMPOSE_PROJECT_NAME=//p' "$env_file" 2>/dev/null | tail -n 1)
project=${COMPOSE_PROJECT_NAME:-${project:-pgha}}
if [ ${#extra[@]} -gt 0 ]; then
  # --volumes deletes the data volumes, never the backup repository unless it is named:
  # stop and remove the containers, then every volume of the project but `backups`.
  scripts/compose.sh "${args[@]}" --profile monitoring down --remove-orphans
  mapfile -t volumes < <(docker volume ls -q --filter "label=com.docker.compose.project=$project")
  for v in "${volumes[@]}"; do
    if [ "${v##*_}" = backups ] && [ "$delete_backups" = 0 ]; then continue; fi
    docker volume rm "$v" >/dev/null
  done
  if [ "$delete_backups" = 1 ]; then
    echo "pgha: stack removed with its data volumes and its backup repository; $env_file kept" >&2
  else
    echo "pgha: stack removed with its data volumes; the backup repository (volume ${project}_backups) and $env_file kept (--delete-backups deletes the repository too)" >&2
  fi
elif [ "$delete_backups" = 1 ]; then
  echo "stack-down: --delete-backups only goes with --volumes" >&2
  exit 2
else
  scripts/compose.sh "${args[@]}" --profile monitoring down --remove-orphans
  echo "pgha: stack stopped; data volumes kept (scripts/stack-down.sh --volumes deletes them)" >&2
fi
