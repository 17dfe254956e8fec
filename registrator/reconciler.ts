/**
 * The pure diff between the keys the containers want and the keys etcd holds:
 * a list of `{ action, reason }`. Used for every write — after a container
 * change (against what this process last wrote), after a lease grant (against
 * nothing), and on each resync (against what etcd really holds).
 *
 * Ownership: a key is this registrator's when it is attached to its lease or
 * when this process wrote it. Only those are deleted when unwanted, and with
 * -cleanup also plain keys (on no lease: a `-ttl 0` run) whose ID starts with
 * `<hostname>:`, left by an earlier process on this host; a key on another lease
 * goes with that lease by itself. Every delete carries a guard (this lease, or the
 * revision read) that etcd checks in the same transaction, so a key rewritten
 * meanwhile survives. A key that another registrator holds on its lease is never
 * overwritten unless its ID names this host (an earlier process of this host).
 */
import { isIP } from "node:net";
import { normalizeRegistryPrefix } from "../shared/keys.js";

export interface ActualKey {
  readonly value: string;
  /** Decimal lease ID, "0" for none. */
  readonly lease: string;
  /** Decimal mod revision, when read from etcd. */
  readonly modRevision?: string;
}

/** What etcd must still hold for a delete to go ahead: the key on this lease, or unchanged since read. */
export type DeleteGuard = { readonly lease: string } | { readonly modRevision: string };

export type Action =
  | { readonly action: "put"; readonly key: string; readonly value: string; readonly reason: string }
  | {
      readonly action: "delete";
      readonly key: string;
      readonly reason: string;
      /** Absent only for a key this process wrote as a plain key (-ttl 0) and never read back. */
      readonly guard?: DeleteGuard;
    }
  | { readonly action: "refuse"; readonly key: string; readonly reason: string };

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
    else if (
      have.lease !== "0" &&
      have.lease !== ctx.leaseId &&
      !ctx.owned.has(key) &&
      !isKeyOfHost(ctx.prefix, ctx.hostname, key)
    ) {
      actions.push({
        action: "refuse",
        key,
        reason: `held by another registrator (lease ${have.lease}) and its ID does not name this host`,
      });
    } else if (have.value !== value) {
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
    const onOurLease = ctx.leaseId !== "0" && have.lease === ctx.leaseId;
    const guard: DeleteGuard | null = onOurLease
      ? { lease: ctx.leaseId }
      : have.modRevision !== undefined
        ? { modRevision: have.modRevision }
        : null;
    if (onOurLease || ctx.owned.has(key)) {
      const reason = "no running container wants it";
      actions.push(guard ? { action: "delete", key, reason, guard } : { action: "delete", key, reason });
    } else if (ctx.cleanup && have.lease === "0" && guard && isKeyOfHost(ctx.prefix, ctx.hostname, key)) {
      actions.push({ action: "delete", key, reason: "stale plain key of this host (-cleanup)", guard });
    }
  }
  return actions.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
