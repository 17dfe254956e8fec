#!/bin/sh
# Runs Prometheus on /etc/prometheus/prometheus.yml with the compose project's name put in:
# the registrator's service discovery lists every agent it sees on the Docker host (another
# stack's too), and the `patroni` job keeps the containers of this project only (their
# names begin with it). PGHA_PROJECT (compose passes COMPOSE_PROJECT_NAME; default pgha).
set -eu
project=${PGHA_PROJECT:-pgha}
case "$project" in
  "" | *[!A-Za-z0-9_.-]*)
    echo "pgha-prometheus: invalid PGHA_PROJECT \"$project\": expected letters, digits, '_', '.' or '-'" >&2
    exit 2
    ;;
esac
dir=/tmp/pgha-prometheus
mkdir -p "$dir"
sed "s/__PGHA_PROJECT__/$project/g" /etc/prometheus/prometheus.yml >"$dir/prometheus.yml"
cp /etc/prometheus/alerts.yml "$dir/alerts.yml"
exec /usr/bin/prometheus --config.file="$dir/prometheus.yml" "$@"
