/**
 * Every etcd key path the project reads or writes is built here.
 */

/** Patroni's default namespace (its `namespace` setting). */
export const DEFAULT_PATRONI_NAMESPACE = "/service/";

/** Patroni's namespace normalised as Patroni does it: `/service/`. */
export function normalizeNamespace(ns: string): string {
  const inner = ns.replace(/^\/+|\/+$/g, "");
  return inner === "" ? "/" : `/${inner}/`;
}

/** `/service/<scope>/` */
export function clusterPrefix(namespace: string, scope: string): string {
  return `${normalizeNamespace(namespace)}${scope}/`;
}

export const patroniKeys = {
  leader: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}leader`,
  member: (ns: string, scope: string, name: string) => `${clusterPrefix(ns, scope)}members/${name}`,
  members: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}members/`,
  failover: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}failover`,
  config: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}config`,
  initialize: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}initialize`,
  /** `{"optime": <leader's last LSN>}`: on a clean shutdown, the leader writes its checkpoint here before it releases the lock. */
  status: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}status`,
  sync: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}sync`,
  /** Failsafe mode's member list: `{"<name>": "<api_url>", ...}`; only these may race for the lock. */
  failsafe: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}failsafe`,
};

/**
 * The agent's own key inside Patroni's cluster prefix (so `patronictl remove` deletes it with
 * the cluster): the stop fence a leader writes when it stops, read by every replica's
 * pre_promote hook (agent/fence.ts).
 */
export const agentKeys = {
  fence: (ns: string, scope: string) => `${clusterPrefix(ns, scope)}pgha-fence`,
};

/**
 * Splits a key under a namespace into scope and the rest:
 * `/service/demo/members/pg1` → { scope: "demo", rest: "members/pg1" }.
 */
export function splitClusterKey(namespace: string, key: string): { scope: string; rest: string } | null {
  const ns = normalizeNamespace(namespace);
  if (!key.startsWith(ns)) return null;
  const tail = key.slice(ns.length);
  const slash = tail.indexOf("/");
  if (slash <= 0) return null;
  return { scope: tail.slice(0, slash), rest: tail.slice(slash + 1) };
}

/** Registrator: the registry prefix normalised to `""` or `/prefix` (no trailing slash). */
export function normalizeRegistryPrefix(prefix: string): string {
  const inner = prefix.replace(/^\/+|\/+$/g, "");
  return inner === "" ? "" : `/${inner}`;
}

export const registryKeys = {
  /** `/<prefix>/<service-name>/` */
  service: (prefix: string, name: string) => `${normalizeRegistryPrefix(prefix)}/${name}/`,
  /** `/<prefix>/<service-name>/<id>` */
  instance: (prefix: string, name: string, id: string) => `${normalizeRegistryPrefix(prefix)}/${name}/${id}`,
  /** Everything a registrator with this prefix may own. */
  all: (prefix: string) => `${normalizeRegistryPrefix(prefix)}/`,
};

/** Router: a live route table, `/routing/allocation/<scope>` = port. */
export const routingKeys = {
  allocationPrefix: "/routing/allocation/",
  allocation: (scope: string) => `/routing/allocation/${scope}`,
};
