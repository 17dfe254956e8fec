#!/usr/bin/env bash
# Makes the stack's private CA and certificates with openssl (README "Security notes"):
#
#   scripts/certs.sh [--dir DIR] [--ip IP]... [--name DNS]... [--renew]
#
#   DIR/ca.crt  ca.key                 the CA (ca.key 0600: it never leaves this directory)
#   DIR/etcd/         ca.crt tls.crt tls.key   etcd's server and peer certificate (2379, 2380)
#   DIR/agent/        ca.crt tls.crt tls.key   PostgreSQL, Patroni's REST API, the agents' etcd client
#   DIR/router/       ca.crt tls.crt tls.key   the router's etcd client certificate
#   DIR/registrator/  ca.crt tls.crt tls.key   the registrator's etcd client certificate
#   DIR/prometheus/   ca.crt                   to check Patroni's REST API when scraping it
#
# Each directory is mounted read-only into its service at /etc/pgha/tls; nothing is built into
# an image. Private keys are 0600, owned by the account the service runs as (router 10002,
# registrator 10001, root for etcd and the agent, which copy theirs for the etcd and postgres
# accounts at start).
#
# Idempotent: an existing CA is kept; a certificate is made again only when it is missing, not
# signed by this CA, expires within 30 days, or its names changed. --renew makes every
# certificate again (the CA stays). Names: the compose service names, localhost, 127.0.0.1 and
# the router's name, plus every --ip / --name (PGHA_TLS_IPS / PGHA_TLS_NAMES, comma or space
# separated): in multi-host mode, every host's IP.
#
# Environment: PGHA_TLS_DIR (./tls), COMPOSE_PROJECT_NAME (pgha: the agents' container names),
# PGHA_TLS_DAYS (397: a certificate's lifetime), PGHA_TLS_IPS, PGHA_TLS_NAMES.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${PGHA_TLS_DIR:-$here/tls}
project=${COMPOSE_PROJECT_NAME:-pgha}
days=${PGHA_TLS_DAYS:-397}
renew=0
ips=() names=()
tls_ips=${PGHA_TLS_IPS:-} tls_names=${PGHA_TLS_NAMES:-}
read -ra ips <<<"${tls_ips//,/ }"
read -ra names <<<"${tls_names//,/ }"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --ip) ips+=("${2:?--ip needs an address}"); shift 2 ;;
    --name) names+=("${2:?--name needs a DNS name}"); shift 2 ;;
    --renew) renew=1; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "certs: unknown argument $1 (accepted: --dir DIR, --ip IP, --name DNS, --renew)" >&2; exit 2 ;;
  esac
done

say() { printf 'certs: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
for ip in "${ips[@]}"; do
  [[ "$ip" =~ ^[0-9.]+$ || "$ip" =~ ^[0-9A-Fa-f:]+$ ]] || die "--ip $ip: expected an IPv4 or IPv6 address"
done
for n in "${names[@]}"; do
  [[ "$n" =~ ^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$ ]] || die "--name $n: expected a DNS name"
done
[[ "$project" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]] || die "COMPOSE_PROJECT_NAME $project: expected letters, digits, '_', '.' or '-'"

# The name the router checks on Patroni's REST API and Prometheus on its /metrics: members are
# reached on container addresses that no certificate can name ahead of time.
AGENT_NAME=pgha-agent
# Accounts the services run as inside their images (router/Dockerfile, registrator/Dockerfile).
ROUTER_UID=10002
REGISTRATOR_UID=10001

umask 077
mkdir -p "$dir"
chmod 0755 "$dir"
ca_key=$dir/ca.key ca_crt=$dir/ca.crt

# A host of a multi-host stack holds the CA's certificate without its key (copied from the host
# that made them): its certificates are checked, and one that must be made again is an error.
signer=1
if [ -s "$ca_crt" ] && [ ! -e "$ca_key" ] && [ "$renew" = 0 ]; then
  signer=0
elif [ ! -s "$ca_key" ] || [ ! -s "$ca_crt" ]; then
  [ -e "$ca_crt" ] && die "$ca_crt exists without $ca_key: restore the CA's key, or move both away to make a new CA"
  say "making a private CA in $dir (ca.key stays there, mode 0600)"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/O=pgha/CN=pgha CA $project $(date -u +%Y-%m-%d)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$ca_key" -out "$ca_crt" 2>/dev/null
  chmod 0600 "$ca_key"
  chmod 0644 "$ca_crt"
  renew=1
fi

# san LIST...: the subjectAltName value for these names (IP literals as IP:, the rest DNS:).
san() {
  local out=() n
  for n in "$@"; do
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then out+=("IP:$n"); else out+=("DNS:$n"); fi
  done
  local IFS=,
  printf '%s' "${out[*]}"
}

# leaf NAME CN UID USAGE NAMES...: DIR/NAME/{ca.crt,tls.crt,tls.key}, the key 0600 owned by UID.
leaf() {
  local name=$1 cn=$2 uid=$3 usage=$4
  shift 4
  local d=$dir/$name alt=""
  [ $# -gt 0 ] && alt=$(san "$@")
  local want="CN=$cn usage=$usage san=$alt"
  mkdir -p "$d"
  chmod 0755 "$d"
  install -m 0644 "$ca_crt" "$d/ca.crt"
  if [ "$renew" = 0 ] && [ -s "$d/tls.key" ] && [ -s "$d/tls.crt" ] &&
    [ "$(cat "$d/names" 2>/dev/null)" = "$want" ] &&
    openssl verify -CAfile "$ca_crt" "$d/tls.crt" >/dev/null 2>&1 &&
    openssl x509 -checkend $((30 * 86400)) -noout -in "$d/tls.crt" >/dev/null 2>&1; then
    chown_key "$d/tls.key" "$uid"
    return 0
  fi
  [ "$signer" = 1 ] ||
    die "$d/tls.crt must be made again (missing, expiring within 30 days, another CA, or other names: $want) but $ca_key is not on this host: run ./pgha certs where it is and copy the certificates here"
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$alt" ] && echo "subjectAltName=$alt"
  } >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=pgha/CN=$cn" \
    -keyout "$d/tls.key.new" -out "$d/tls.csr" 2>/dev/null
  openssl x509 -req -in "$d/tls.csr" -CA "$ca_crt" -CAkey "$ca_key" -days "$days" \
    -set_serial "0x$(openssl rand -hex 16)" -extfile "$ext" -out "$d/tls.crt.new" 2>/dev/null
  rm -f "$ext" "$d/tls.csr"
  chmod 0600 "$d/tls.key.new"
  chmod 0644 "$d/tls.crt.new"
  chown_key "$d/tls.key.new" "$uid"
  mv -f "$d/tls.key.new" "$d/tls.key"
  mv -f "$d/tls.crt.new" "$d/tls.crt"
  printf '%s\n' "$want" >"$d/names"
  chmod 0644 "$d/names"
  say "made $name/tls.crt ($cn, valid $days days${alt:+: $alt})"
}

chown_key() { # the service's account must read its key through the read-only bind mount
  local file=$1 uid=$2
  [ "$(stat -c %u "$file")" = "$uid" ] && return 0
  if [ "$(id -u)" = 0 ]; then
    chown "$uid:$uid" "$file"
  else
    say "warning: $file must belong to uid $uid for its service to read it; run as root, or: sudo chown $uid:$uid $file"
  fi
}

local_names=(localhost 127.0.0.1 ::1)
leaf etcd etcd 0 serverAuth,clientAuth etcd etcd1 etcd2 etcd3 "${local_names[@]}" "${names[@]}" "${ips[@]}"
leaf agent "$AGENT_NAME" 0 serverAuth,clientAuth "$AGENT_NAME" router pg1 pg2 pg3 \
  "$project-pg1" "$project-pg2" "$project-pg3" "${local_names[@]}" "${names[@]}" "${ips[@]}"
leaf router pgha-router "$ROUTER_UID" clientAuth
leaf registrator pgha-registrator "$REGISTRATOR_UID" clientAuth
mkdir -p "$dir/prometheus"
chmod 0755 "$dir/prometheus"
install -m 0644 "$ca_crt" "$dir/prometheus/ca.crt"
