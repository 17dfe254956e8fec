#!/usr/bin/env bash
# Starts the compose stack on this host and waits until it serves: builds the
# images (cached), writes .env with random passwords when it has none, runs
# `docker compose up -d` (or docker-compose 1.29), waits until the router routes
# to a primary, checks a query through it, and prints the psql URL.
#
#   scripts/stack-up.sh [--monitoring] [--no-build]     (or PGHA_MONITORING=1, PGHA_NO_BUILD=1)
#
# Environment (each may also be set in .env; the environment wins):
#   PGHA_PORT (5432), PGHA_REPLICA_PORT (5433), PGHA_ADMIN_PORT (8080),
#   PGHA_PROMETHEUS_PORT (9090), PGHA_ALERTMANAGER_PORT (9093), PGHA_BIND (127.0.0.1): where
#   the host publishes them
#   PGHA_ENV_FILE (./.env), PGHA_WAIT (seconds to wait for a primary, 300)
#   POSTGRES_USERNAME, POSTGRES_PASSWORD, REPLICATION_PASSWORD, SUPERUSER_PASSWORD,
#   RESTAPI_PASSWORD: used when .env is first written instead of random ones
#   PGHA_TLS_DIR (./tls): the private CA and certificates, made or renewed by scripts/certs.sh
#   at every run (an existing CA is kept); PGHA_TLS_IPS: more addresses the certificates name
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
env_file="${PGHA_ENV_FILE:-$here/.env}"
monitoring=${PGHA_MONITORING:-0}
build=1
[ "${PGHA_NO_BUILD:-0}" = 1 ] && build=0
for arg in "$@"; do
  case "$arg" in
    --monitoring) monitoring=1 ;;
    --no-build) build=0 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "stack-up: unknown argument $arg (accepted: --monitoring, --no-build)" >&2; exit 2 ;;
  esac
done

say() { printf 'pgha: %s\n' "$*" >&2; }

random_secret() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 || true; }

# The name this Docker host goes by in the registrator's keys: the engine's name and the first
# 8 hex digits of the SHA-256 of its ID (what the registrator itself picks without -hostname,
# registrator/options.ts engineHostname): unique per host, so that two stacks sharing an etcd
# never name their keys alike.
engine_hostname() {
  local name id
  name=$(docker info -f '{{.Name}}' 2>/dev/null | sed -E 's/[^A-Za-z0-9._-]+/-/g; s/^-+|-+$//g')
  id=$(docker info -f '{{.ID}}' 2>/dev/null)
  [ -n "$id" ] || { echo local; return; }
  printf '%s-%s' "${name:-docker}" "$(printf '%s' "$id" | sha256sum | cut -c1-8)"
}

# .env: created with mode 0600; missing settings are added, existing ones never changed.
ensure_env() {
  local added=()
  (
    umask 077
    if [ ! -f "$env_file" ]; then
      {
        echo "# Settings of the pgha compose stack, written by scripts/stack-up.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
        echo "# Keep this file private (mode 0600). Passwords are used when the cluster is first created:"
        echo "# changing them here later does not change them in PostgreSQL (see agent/README.md)."
      } >"$env_file"
    fi
  )
  chmod 600 "$env_file"
  local var value
  for var in COMPOSE_PROJECT_NAME PATRONI_SCOPE POSTGRES_USERNAME DOCKER_GID DOCKER_HOSTNAME PGHA_TLS_DIR \
    POSTGRES_PASSWORD REPLICATION_PASSWORD SUPERUSER_PASSWORD RESTAPI_PASSWORD; do
    grep -q "^$var=" "$env_file" && continue
    case "$var" in
      COMPOSE_PROJECT_NAME | PATRONI_SCOPE) value="${!var:-pgha}" ;;
      POSTGRES_USERNAME) value="${!var:-admin}" ;;
      # The registrator runs without root and reaches Docker through the socket's group.
      DOCKER_GID) value="${!var:-$(stat -c %g /var/run/docker.sock 2>/dev/null || echo 0)}" ;;
      DOCKER_HOSTNAME) value="${!var:-$(engine_hostname)}" ;;
      PGHA_TLS_DIR) value="${!var:-$(cd "$(dirname "$env_file")" && pwd)/tls}" ;;
      *) value="${!var:-$(random_secret)}" ;;
    esac
    printf '%s=%s\n' "$var" "$value" >>"$env_file"
    added+=("$var")
  done
  if [ ${#added[@]} -gt 0 ]; then say "wrote ${added[*]} to $env_file (mode 0600)"; fi
}

# A setting: the environment first, then the env file, then the default.
setting() {
  local name=$1 default=${2:-} v="${!1:-}"
  if [ -z "$v" ] && [ -f "$env_file" ]; then v=$(sed -n "s/^$name=//p" "$env_file" | tail -n 1); fi
  printf '%s' "${v:-$default}"
}

compose() { scripts/compose.sh --env-file "$env_file" "$@"; }

http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
  else
    node -e 'fetch(process.argv[1],{signal:AbortSignal.timeout(2000)}).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "$1"
  fi
}

ensure_env
project=$(setting COMPOSE_PROJECT_NAME pgha)
scope=$(setting PATRONI_SCOPE pgha)
user=$(setting POSTGRES_USERNAME admin)
bind=$(setting PGHA_BIND 127.0.0.1)
port=$(setting PGHA_PORT 5432)
replica_port=$(setting PGHA_REPLICA_PORT 5433)
admin_port=$(setting PGHA_ADMIN_PORT 8080)
prom_port=$(setting PGHA_PROMETHEUS_PORT 9090)
am_port=$(setting PGHA_ALERTMANAGER_PORT 9093)
wait_s=$(setting PGHA_WAIT 300)
agent_image=$(setting PGHA_AGENT_IMAGE pgha/agent:dev)
host=$bind
case "$host" in 0.0.0.0 | "" | "::" | "[::]") host=127.0.0.1 ;; esac

# The private CA and the certificates every service mounts: made once, renewed when they near
# their end or their names change (scripts/certs.sh). A running service reads a renewed
# certificate when it restarts (README "Security notes": rotating the certificates).
tls_dir=$(setting PGHA_TLS_DIR "$(cd "$(dirname "$env_file")" && pwd)/tls")
COMPOSE_PROJECT_NAME="$project" PGHA_TLS_DIR="$tls_dir" PGHA_TLS_IPS="$(setting PGHA_TLS_IPS)" \
  scripts/certs.sh || { say "could not make the certificates in $tls_dir"; exit 1; }

if [ "$build" = 1 ]; then
  images=(agent etcd registrator router)
  [ "$monitoring" = 1 ] && images+=(prometheus alertmanager)
  scripts/build-images.sh "${images[@]}"
fi

# A host port something else already listens on (a local PostgreSQL on 5432, say) fails late
# and obscurely inside compose; say so now. Our own running router holds them legitimately.
port_in_use() { (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null; }
# The ports belong to router-ports (the router's holder) once the stack runs.
ports_held=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=router-ports" 2>/dev/null || true)
router_running=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
  --filter "label=com.docker.compose.service=router" 2>/dev/null || true)
if [ -z "$ports_held" ] && [ -z "$router_running" ]; then
  for p in "PGHA_PORT=$port" "PGHA_REPLICA_PORT=$replica_port" "PGHA_ADMIN_PORT=$admin_port"; do
    if port_in_use "${p#*=}"; then
      say "port ${p#*=} on $host is already in use; choose another with ${p%%=*}=<port> (in $env_file or the environment)"
      exit 1
    fi
  done
fi

profile=()
[ "$monitoring" = 1 ] && profile=(--profile monitoring)
if [ -n "$ports_held" ]; then
  # Already up: apply changes one part at a time (scripts/stack-roll.sh), not all at once.
  roll=()
  [ "$monitoring" = 1 ] && roll=(--monitoring)
  PGHA_ENV_FILE="$env_file" scripts/stack-roll.sh "${roll[@]}"
else
  say "starting project $project (cluster $scope)"
  compose "${profile[@]}" up -d --no-build >&2
fi

say "waiting up to ${wait_s}s for the router to route to a primary (http://$host:$admin_port/readyz)"
deadline=$(($(date +%s) + wait_s))
until http_ok "http://$host:$admin_port/readyz"; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    say "no routable primary after ${wait_s}s; state of the stack:"
    compose "${profile[@]}" ps >&2 || true
    compose logs --tail 20 router pg1 pg2 pg3 >&2 || true
    exit 1
  fi
  sleep 1
done

# A real query through the router, from the host's side of the published port.
password=$(setting POSTGRES_PASSWORD)
url="postgresql://$user@$host:$port/postgres"
ok=0
for _ in $(seq 1 30); do
  # The password goes through the environment (-e NAME without a value), never a command line
  # that any local user can read in ps.
  if PGPASSWORD="$password" docker run --rm --network host --entrypoint psql -e PGPASSWORD -e PGCONNECT_TIMEOUT=5 \
    "$agent_image" "$url" -Atqc 'select 1' >/dev/null 2>&1; then
    ok=1
    break
  fi
  sleep 1
done
[ "$ok" = 1 ] || { say "the router is ready but a query through $host:$port failed"; exit 1; }

docker exec "$project-pg1" patronictl list >&2 2>/dev/null || true
cat >&2 <<EOF
pgha: the stack is up.
  primary (read-write):  psql "$url"
  with TLS checked:      psql "$url?sslmode=verify-full&sslrootcert=$tls_dir/ca.crt"
  replicas (read-only):  psql "postgresql://$user@$host:$replica_port/postgres"
  password:              POSTGRES_PASSWORD in $env_file, e.g.
                         PGPASSWORD="\$(sed -n 's/^POSTGRES_PASSWORD=//p' $env_file)" psql "$url"
  router:                http://$host:$admin_port/  (status page)  /routes  /metrics  /readyz
EOF
if [ "$monitoring" = 1 ]; then
  echo "  prometheus:            http://$host:$prom_port/alerts" >&2
  echo "  alertmanager:          http://$host:$am_port/  (receiver: ALERTMANAGER_WEBHOOK_URL in $env_file)" >&2
fi
echo "  stop:                  ./pgha down   (data kept; ./pgha down --volumes deletes it)" >&2
# The URL alone on stdout, for scripts: psql "$(./pgha up)"
echo "$url"
