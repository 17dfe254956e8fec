#!/bin/sh
# Starts etcd as the etcd account. Started as root so that TLS keys mounted read-only and
# owned by root (mode 0600, as scripts/certs.sh makes them) can be handed to etcd: each key
# etcd is told about (ETCD_KEY_FILE, ETCD_PEER_KEY_FILE) that the etcd account cannot read is
# copied into a directory of its own, owned by etcd, mode 0600, and etcd is pointed at the copy.
set -eu
if [ "$(id -u)" != 0 ]; then exec /usr/bin/etcd "$@"; fi
copies=/run/pgha-etcd
install -d -o etcd -g etcd -m 0700 "$copies"
for var in ETCD_KEY_FILE ETCD_PEER_KEY_FILE; do
  eval "src=\${$var:-}"
  [ -n "$src" ] || continue
  if [ ! -r "$src" ]; then
    echo "pgha-etcd: $var=$src cannot be read (is the certificates' directory mounted? scripts/certs.sh makes it)" >&2
    exit 2
  fi
  dst="$copies/$(echo "$var" | tr 'A-Z_' 'a-z-').pem"
  install -o etcd -g etcd -m 0600 "$src" "$dst"
  export "$var=$dst"
done
# A data directory made by an image whose etcd account had another uid.
chown etcd:etcd /var/lib/etcd
exec setpriv --reuid=etcd --regid=etcd --init-groups /usr/bin/etcd "$@"
