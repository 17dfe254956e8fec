#!/bin/sh
# Renders Alertmanager's configuration from the environment, checks it with amtool, and
# runs Alertmanager (one instance: no cluster gossip). Settings (compose passes them from .env):
#
#   ALERTMANAGER_WEBHOOK_URL        where every alert is POSTed (Alertmanager's webhook JSON);
#                                   empty: the `none` receiver, which sends nowhere
#   ALERTMANAGER_SEND_RESOLVED      tell the webhook when an alert resolves (true)
#   ALERTMANAGER_GROUP_WAIT         wait before the first notification of a new group (30s)
#   ALERTMANAGER_GROUP_INTERVAL     wait before notifying a group's new alerts (5m)
#   ALERTMANAGER_REPEAT_INTERVAL    resend a group still firing after (4h)
#   ALERTMANAGER_RETENTION          how long silences and notification state are kept (120h)
#
#   pgha-alertmanager --render      print the configuration and exit (the unit tier checks it)
#   pgha-alertmanager [FLAG…]       run Alertmanager; flags are passed on
#
# The URL may carry a token: the rendered file is readable by its owner only, and the URL is
# never printed.
set -eu

config=${ALERTMANAGER_CONFIG:-/etc/pgha-alertmanager/alertmanager.yml}
url=${ALERTMANAGER_WEBHOOK_URL:-}
send_resolved=${ALERTMANAGER_SEND_RESOLVED:-true}
group_wait=${ALERTMANAGER_GROUP_WAIT:-30s}
group_interval=${ALERTMANAGER_GROUP_INTERVAL:-5m}
repeat_interval=${ALERTMANAGER_REPEAT_INTERVAL:-4h}
retention=${ALERTMANAGER_RETENTION:-120h}

fail() {
  echo "pgha-alertmanager: $*" >&2
  exit 2
}

duration() { # NAME VALUE: a Prometheus duration such as 30s, 5m, 1h30m
  printf '%s' "$2" | grep -Eq '^([0-9]+(ms|s|m|h|d|w|y))+$' ||
    fail "$1=$2 is not a duration (such as 30s, 5m, 4h)"
}

duration ALERTMANAGER_GROUP_WAIT "$group_wait"
duration ALERTMANAGER_GROUP_INTERVAL "$group_interval"
duration ALERTMANAGER_REPEAT_INTERVAL "$repeat_interval"
duration ALERTMANAGER_RETENTION "$retention"
case "$send_resolved" in true | false) ;; *) fail "ALERTMANAGER_SEND_RESOLVED must be true or false" ;; esac
if [ -n "$url" ]; then
  case "$url" in
    http://?* | https://?*) ;;
    *) fail "ALERTMANAGER_WEBHOOK_URL must be an http:// or https:// URL" ;;
  esac
  # One line, no whitespace: it goes into YAML as a single-quoted scalar.
  case "$url" in *[[:space:]]*) fail "ALERTMANAGER_WEBHOOK_URL must not contain spaces or line breaks" ;; esac
fi

render() {
  if [ -n "$url" ]; then receiver=webhook; else receiver=none; fi
  cat <<YAML
# Rendered by pgha-alertmanager from the environment at start; edit .env, not this file.
route:
  receiver: $receiver
  # One notification per alert and cluster member or route, not one per alert name.
  group_by: [alertname, job, instance, route, scope]
  group_wait: $group_wait
  group_interval: $group_interval
  repeat_interval: $repeat_interval
receivers:
  # Sends nowhere: the alerts still show in Alertmanager's UI and API.
  - name: none
YAML
  if [ -n "$url" ]; then
    # YAML single quotes: a quote inside is written twice.
    quoted=$(printf '%s' "$url" | sed "s/'/''/g")
    cat <<YAML
  - name: webhook
    webhook_configs:
      - url: '$quoted'
        send_resolved: $send_resolved
YAML
  fi
}

if [ "${1:-}" = --render ]; then
  render
  exit 0
fi

umask 077
render >"$config"
amtool check-config "$config" >/dev/null || fail "the rendered configuration is not valid (amtool check-config $config)"
if [ -n "$url" ]; then
  echo "pgha-alertmanager: alerts go to the webhook in ALERTMANAGER_WEBHOOK_URL" >&2
else
  echo "pgha-alertmanager: ALERTMANAGER_WEBHOOK_URL is empty: alerts are kept, sent nowhere" >&2
fi
exec /usr/bin/prometheus-alertmanager \
  --config.file="$config" \
  --storage.path=/alertmanager \
  --data.retention="$retention" \
  --web.listen-address=0.0.0.0:9093 \
  --cluster.listen-address= \
  "$@"
