/**
 * The pure diff between the keys the containers want and the keys etcd holds:
 * a list of `{ action, reason }`. Used for every write — after a container
 * change (against what this process last wrote), after a lease grant (against
 * nothing), and on each resync (against what etcd really holds).
 *
 * Ownership: a key is this registrator's when it is attached to its lease or
 * when this process wrote it. Only those are deleted when unwanted, and with
 * -cleanup also keys whose ID starts with `<hostname>:` (left by an earlier
 * process on this host). Keys of other hosts are never touched.
 */
import { isIP } from "node:net";
import { normalizeRegistryPrefix } from "../shared/keys.js";

export interface ActualKey {
  readonly value: string;
  /** Decimal lease ID, "0" for none. */
  readonly lease: string;
}

export type Action =
  | { readonly action: "put"; readonly key: string; readonly value: string; readonly reason: string }
  | { readonly action: "delete"; readonly key: string; readonly reason: string };

export interface PlanContext {
  readonly prefix: string;
  readonly hostname: string;
  /** Decimal lease ID keys are attached to; "0" writes plain keys (-ttl 0). */
  readonly leaseId: string;
  readonly cleanup: boolean;
  /** Keys this process wrote and still believes it holds. */
  readonly owned: ReadonlySet<string>;
}

/** `/<prefix>/<name>/<id>` → { name, id }, or null when the key is not of that shape. */
export function parseServiceKey(prefix: string, key: string): { name: string; id: string } | null {
  const root = `${normalizeRegistryPrefix(prefix)}/`;
  if (!key.startsWith(root)) return null;
  const parts = key.slice(root.length).split("/");
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "") return null;
  return { name: parts[0]!, id: parts[1]! };
}

/** True when the key is a service key whose ID names this host. */
export function isKeyOfHost(prefix: string, hostname: string, key: string): boolean {
  const parsed = parseServiceKey(prefix, key);
  return parsed?.id.startsWith(`${hostname}:`) ?? false;
}

/** `ip:port` or `[v6]:port` with a port from 1 to 65535. */
export function isValidAddress(value: string): boolean {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return false;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return false;
  return m[1] !== undefined ? isIP(m[1]) === 6 : isIP(m[2]!) === 4;
}

export function plan(
  desired: ReadonlyMap<string, string>,
  actual: ReadonlyMap<string, ActualKey>,
  ctx: PlanContext,
): Action[] {
  const actions: Action[] = [];
  for (const [key, value] of desired) {
    if (!isValidAddress(value)) continue; // the model never produces these; never write one
    const have = actual.get(key);
    if (!have) actions.push({ action: "put", key, value, reason: "missing from etcd" });
    else if (have.value !== value) {
      actions.push({ action: "put", key, value, reason: `value was ${JSON.stringify(have.value)}` });
    } else if (have.lease !== ctx.leaseId) {
      actions.push({
        action: "put",
        key,
        value,
        reason:
          ctx.leaseId === "0"
            ? "attached to a lease; -ttl 0 writes plain keys"
            : "not attached to this registrator's lease",
      });
    }
  }
  for (const [key, have] of actual) {
    if (desired.has(key)) continue;
    const ours = ctx.owned.has(key) || (ctx.leaseId !== "0" && have.lease === ctx.leaseId);
    if (ours) actions.push({ action: "delete", key, reason: "no running container wants it" });
    else if (ctx.cleanup && isKeyOfHost(ctx.prefix, ctx.hostname, key)) {
      actions.push({ action: "delete", key, reason: "stale key of this host (-cleanup)" });
    }
  }
  return actions.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
