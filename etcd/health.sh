#!/bin/sh
# The image's health check: etcd answers on its own client URL, over TLS with its own
# certificate when it serves TLS (ETCD_CERT_FILE; peers and clients alike must present one).
# etcdctl refuses a flag whose ETCDCTL_* variable is also set: the flags alone say it here.
set -eu
unset ETCDCTL_ENDPOINTS ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
if [ -n "${ETCD_CERT_FILE:-}" ]; then
  exec etcdctl --endpoints=https://127.0.0.1:2379 --cacert="$ETCD_TRUSTED_CA_FILE" \
    --cert="$ETCD_CERT_FILE" --key="$ETCD_KEY_FILE" endpoint health >/dev/null
fi
exec etcdctl --endpoints=http://127.0.0.1:2379 endpoint health >/dev/null
