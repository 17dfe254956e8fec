#!/usr/bin/env bash
# Runs Docker Compose, whichever is installed: `docker compose` (v2) or `docker-compose` (1.29).
#   scripts/compose.sh ps
set -euo pipefail
if docker compose version >/dev/null 2>&1; then
  exec docker compose "$@"
elif command -v docker-compose >/dev/null 2>&1; then
  exec docker-compose "$@"
fi
echo "compose: neither 'docker compose' nor 'docker-compose' is installed" >&2
exit 1
