#!/usr/bin/env bash
# Applies a change of images or settings to a running compose stack one part at a time, so
# that clients see no more than a planned switchover: scripts/stack-up.sh (./pgha up) runs
# this instead of `compose up -d` when the stack is already up.
#
#   scripts/stack-roll.sh [--monitoring]      # env: PGHA_ENV_FILE (default ./.env)
#
# Order, each part waited for before the next:
#   1. etcd1, etcd2, etcd3: recreated one at a time; the next only once all three are healthy;
#   2. the registrator;
#   3. the router: a new router starts beside the old one in the network namespace that
#      router-ports holds (both listen on the same ports, SO_REUSEPORT); once the new one
#      routes, the old one drains and stops (the kernel hands it queued connections to the
#      new one);
#   4. the replicas, one at a time, each back to streaming (and a synchronous standby in
#      synchronous mode) before the next;
#   5. the leader last: stopping it hands over to its synchronous standby first (the agent's
#      planned stop), and it comes back as a replica;
#   6. Prometheus and Alertmanager (monitoring profile), when they run.
# A part whose container already runs its current image and settings is left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
env_file="${PGHA_ENV_FILE:-$here/.env}"
monitoring=0
for arg in "$@"; do
  case "$arg" in
    --monitoring) monitoring=1 ;;
    *) echo "stack-roll: unknown argument $arg (accepted: --monitoring)" >&2; exit 2 ;;
  esac
done

say() { printf 'pgha: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
compose() { scripts/compose.sh --env-file "$env_file" "$@"; }
setting() {
  local name=$1 default=${2:-} v="${!1:-}"
  if [ -z "$v" ] && [ -f "$env_file" ]; then v=$(sed -n "s/^$name=//p" "$env_file" | tail -n 1); fi
  printf '%s' "${v:-$default}"
}
project=$(setting COMPOSE_PROJECT_NAME pgha)
drain=$(setting PGHA_ROUTER_DRAIN 30)

container_of() { # the (first) running container of a service
  docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" | head -n 1
}

# True when a service's container runs another image than its tag names now, or other settings.
outdated() {
  local svc=$1 c want have image
  c=$(container_of "$svc")
  [ -n "$c" ] || return 0
  want=$(compose config --hash="$svc" 2>/dev/null | awk '{ print $2 }')
  have=$(docker inspect -f '{{ index .Config.Labels "com.docker.compose.config-hash" }}' "$c")
  [ -n "$want" ] && [ "$want" != "$have" ] && return 0
  image=$(docker inspect -f '{{ .Config.Image }}' "$c")
  [ "$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null)" != "$(docker inspect -f '{{ .Image }}' "$c")" ]
}

wait_until() { # SECONDS WHAT COMMAND...
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$what did not happen within ${limit}s; stopping the update here"
    sleep 1
  done
}

etcd_healthy() {
  local c
  c=$(container_of etcd1)
  [ -n "$c" ] || c=$(container_of etcd2)
  # The members' own etcdctl settings (ETCDCTL_CACERT, _CERT, _KEY: TLS with etcd's certificate)
  # apply; without them (a stack made before TLS), plain http.
  local scheme=https
  docker exec "$c" printenv ETCDCTL_CERT >/dev/null 2>&1 || scheme=http
  docker exec "$c" etcdctl --endpoints="$scheme://etcd1:2379,$scheme://etcd2:2379,$scheme://etcd3:2379" \
    endpoint health 2>&1 | grep -c 'is healthy' | grep -qx 3
}

# Patroni's view of the cluster, from the first agent that answers.
cluster_json() {
  local a c
  for a in pg1 pg2 pg3; do
    c=$(container_of "$a")
    [ -n "$c" ] || continue
    # https with the stack's CA (a stack with TLS), else http (one made before TLS).
    docker exec "$c" curl -fsS --max-time 3 --cacert /etc/pgha/tls/ca.crt https://127.0.0.1:8008/cluster 2>/dev/null && return 0
    docker exec "$c" curl -fsS --max-time 3 http://127.0.0.1:8008/cluster 2>/dev/null && return 0
  done
  return 1
}
leader() { cluster_json | jq -r '.members[] | select(.role == "leader" and .state == "running") | .name'; }
# The member streams on the leader's timeline and, in synchronous mode, a synchronous standby
# exists (`sync_standby`, or `quorum_standby` with synchronous_mode quorum).
streaming() {
  local name=$1 json
  json=$(cluster_json) || return 1
  jq -e --arg n "$name" '
    def standby: .role == "sync_standby" or .role == "quorum_standby";
    (.members[] | select(.role == "leader") | .timeline) as $tl
    | (.members[] | select(.name == $n) | (.role == "replica" or standby)
        and (.state == "running" or .state == "streaming") and .timeline == $tl)
    and ((.members | map(select(standby)) | length) > 0
        or ([.members[] | select(.role != "leader")] | length) == 0
        or (env.PGHA_SYNC == "false"))' <<<"$json" >/dev/null
}

roll_etcd() {
  local m
  for m in etcd1 etcd2 etcd3; do
    outdated "$m" || continue
    say "update: $m"
    compose up -d --no-deps "$m" >&2
    wait_until 180 "etcd healthy with $m replaced" etcd_healthy
  done
}

roll_registrator() {
  outdated registrator || return 0
  say "update: registrator"
  compose up -d --no-deps registrator >&2
  local c
  c=$(container_of registrator)
  wait_until 120 "the registrator healthy" sh -c "docker inspect -f '{{.State.Health.Status}}' $c | grep -qx healthy"
}

roll_router() {
  outdated router || return 0
  local old new
  old=$(container_of router)
  say "update: router (a new one beside the old, on the same ports)"
  compose up -d --no-deps --no-recreate --scale router=2 router >&2
  new=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=router" | grep -v "^${old:0:12}" | head -n 1)
  [ -n "$new" ] || die "the new router did not start"
  wait_until 120 "the new router routing" sh -c "docker logs $new 2>&1 | grep -q '\"action\":\"route\"'"
  say "update: the old router drains (up to ${drain}s) and stops"
  docker stop -t "$drain" "$old" >/dev/null
  docker rm "$old" >/dev/null
}

roll_agents() {
  local l a
  l=$(leader) || true
  [ -n "$l" ] || die "no running leader: not updating the agents (nothing to hand over to)"
  for a in pg1 pg2 pg3; do
    [ "$a" = "$l" ] && continue
    outdated "$a" || continue
    say "update: $a (replica)"
    compose up -d --no-deps "$a" >&2
    wait_until 300 "$a streaming again" streaming "$a"
  done
  if outdated "$l"; then
    say "update: $l (the leader: it hands over first)"
    compose up -d --no-deps "$l" >&2
    wait_until 300 "$l streaming again" streaming "$l"
  fi
}

roll_monitoring() {
  local svc
  for svc in prometheus alertmanager; do
    [ "$monitoring" = 1 ] || [ -n "$(container_of "$svc")" ] || continue
    outdated "$svc" || continue
    say "update: $svc"
    compose --profile monitoring up -d --no-deps "$svc" >&2
  done
}

export PGHA_SYNC
PGHA_SYNC=$(setting PATRONI_SYNCHRONOUS_MODE true)
start=$(date +%s)
say "the stack runs: updating it one part at a time"
# New parts of the file (router-ports on a stack from before it) start first.
compose up -d --no-deps --no-recreate router-ports >&2
roll_etcd
roll_registrator
roll_router
roll_agents
roll_monitoring
say "update done in $(($(date +%s) - start)) s"
