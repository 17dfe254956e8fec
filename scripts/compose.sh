#!/usr/bin/env bash
# Runs Docker Compose, whichever is installed: `docker compose` (v2) or `docker-compose` (1.29).
# PGHA_COMPOSE=v2 or PGHA_COMPOSE=v1 insists on one of them.
#   scripts/compose.sh ps
set -euo pipefail
v2() { docker compose version >/dev/null 2>&1; }
v1() { command -v docker-compose >/dev/null 2>&1; }
case "${PGHA_COMPOSE:-}" in
"") ;;
v2) v2 && exec docker compose "$@" ;;
v1) v1 && exec docker-compose "$@" ;;
*)
  echo "compose: PGHA_COMPOSE=${PGHA_COMPOSE} is not understood; accepted: v2 (docker compose), v1 (docker-compose), or unset (whichever is installed)" >&2
  exit 2
  ;;
esac
if [ -n "${PGHA_COMPOSE:-}" ]; then
  echo "compose: PGHA_COMPOSE=${PGHA_COMPOSE} asks for $([ "$PGHA_COMPOSE" = v2 ] && echo "'docker compose'" || echo "'docker-compose'"), which is not installed (./pgha setup installs both)" >&2
  exit 1
fi
if v2; then
  exec docker compose "$@"
elif v1; then
  exec docker-compose "$@"
fi
echo "compose: neither 'docker compose' nor 'docker-compose' is installed" >&2
exit 1
