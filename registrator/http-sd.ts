/**
 * Prometheus HTTP service discovery (`http_sd_configs`) from the registry: every service
 * every registrator published in etcd, on every host, as Prometheus's target groups. Pure:
 * the keys under the prefix in, the JSON out. app.ts serves it at `/sd` on the metrics port,
 * read from etcd at each request; prometheus/prometheus.yml keeps the services it scrapes.
 */
import { isValidAddress, parseServiceKey } from "./reconciler.js";

export interface TargetGroup {
  readonly targets: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * One group per key `/<prefix>/<service>/<id>` = `ip:port`, labelled `service`, `id` and, when
 * the ID has the default shape `<host>:<container>:<port>[:proto]`, `host`, `container` and
 * `port` (the container's exposed port; the target's port is the published one). Keys of
 * another shape, and values that are no address, are left out. Sorted by key.
 */
export function targetGroups(prefix: string, kvs: Readonly<Record<string, string>>): TargetGroup[] {
  const out: { key: string; group: TargetGroup }[] = [];
  for (const [key, value] of Object.entries(kvs)) {
    const parsed = parseServiceKey(prefix, key);
    if (parsed === null || !isValidAddress(value)) continue;
    const labels: Record<string, string> = { service: parsed.name, id: parsed.id };
    const m = /^([^:]+):([^:]+):(\d{1,5})(?::(udp|sctp))?$/.exec(parsed.id);
    if (m) {
      labels["host"] = m[1]!;
      labels["container"] = m[2]!;
      labels["port"] = m[3]!;
      if (m[4]) labels["protocol"] = m[4];
    }
    out.push({ key, group: { targets: [value], labels } });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((x) => x.group);
}
