/**
 * The stop fence: how a stopping leader keeps a replica that lacks some of its
 * acknowledged writes from taking over. Pure: decoding, encoding, and the
 * verdict every node's pre_promote hook asks for (agent/promotion-check.ts
 * serves it; agent/stop.ts writes the fence).
 *
 * Patroni alone does not guarantee it: after a clean shutdown the old leader
 * writes its checkpoint position to `/status` and releases the lock, and any
 * replica within `maximum_lag_on_failover` (1 MB by default) of that position
 * may promote, even one that never streamed the last writes. So a leader that
 * stops writes `/<namespace>/<scope>/pgha-fence` first:
 *
 * - `stopping`: the leader is stopping or waiting for a replica to catch up.
 *   Only the leader itself may promote (it keeps its data on its volume).
 * - `handover`: the leader hands over to `candidate`, a replica streaming from
 *   it. The candidate may promote once it has the position the leader wrote to
 *   `/status` when it shut down (its shutdown checkpoint); nobody else may.
 * - `stopped`: the leader shut down cleanly at checkpoint `lsn`. A replica may
 *   promote once it has replayed or received up to `lsn`: it then has every
 *   acknowledged write.
 *
 * No fence: Patroni's own rules (synchronous mode, `maximum_lag_on_failover`).
 * A fence that cannot be read refuses every promotion but the old leader's: fail
 * closed. The new leader deletes the fence once it runs as primary
 * (agent/fence-keeper.ts).
 */

export type Fence =
  | { readonly state: "stopping"; readonly member: string; readonly since: string }
  | {
      readonly state: "handover";
      readonly member: string;
      readonly candidate: string;
      readonly since: string;
    }
  | {
      readonly state: "stopped";
      readonly member: string;
      /** The shutdown checkpoint's position in bytes (Patroni's unit for `/status` optime). */
      readonly lsn: number;
      readonly since: string;
    };

export type FenceState = Fence["state"];

/** What a read of the key gave: no fence, a fence, or a value this version cannot read. */
export type FenceRead =
  | { readonly kind: "none" }
  | { readonly kind: "fence"; readonly fence: Fence }
  | { readonly kind: "invalid"; readonly raw: string };

export interface PromotionVerdict {
  readonly allow: boolean;
  readonly reason: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

function isName(v: unknown): v is string {
  return typeof v === "string" && NAME_RE.test(v);
}

function isLsn(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Decodes the key's value leniently: never throws; anything unreadable is `invalid`. */
export function decodeFence(raw: string | null): FenceRead {
  if (raw === null || raw.trim() === "") return { kind: "none" };
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return { kind: "invalid", raw };
  }
  if (typeof v !== "object" || v === null) return { kind: "invalid", raw };
  const o = v as Record<string, unknown>;
  const since = typeof o["since"] === "string" ? o["since"] : "";
  if (!isName(o["member"])) return { kind: "invalid", raw };
  const member = o["member"];
  switch (o["state"]) {
    case "stopping":
      return { kind: "fence", fence: Object.freeze({ state: "stopping", member, since }) };
    case "handover":
      if (!isName(o["candidate"])) return { kind: "invalid", raw };
      return {
        kind: "fence",
        fence: Object.freeze({ state: "handover", member, candidate: o["candidate"], since }),
      };
    case "stopped":
      if (!isLsn(o["lsn"])) return { kind: "invalid", raw };
      return { kind: "fence", fence: Object.freeze({ state: "stopped", member, lsn: o["lsn"], since }) };
    default:
      return { kind: "invalid", raw };
  }
}

export function encodeFence(f: Fence): string {
  return JSON.stringify(f);
}

/** `0/3000060` → bytes; null when it is not an LSN. */
export function parseLsn(text: string): number | null {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) return null;
  return Number.parseInt(m[1]!, 16) * 2 ** 32 + Number.parseInt(m[2]!, 16);
}

/** bytes → `0/3000060`, as PostgreSQL prints an LSN. */
export function formatLsn(bytes: number): string {
  const hi = Math.floor(bytes / 2 ** 32);
  const lo = bytes - hi * 2 ** 32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

export interface PromotionInput {
  /** This node's member name. */
  readonly self: string;
  readonly fence: FenceRead;
  /** `/status` optime: the old leader's last position (its checkpoint after a clean shutdown); null if absent. */
  readonly statusOptime: number | null;
  /** This node's WAL position (max of received and replayed, as Patroni counts it); null if unknown. */
  readonly ownLsn: number | null;
}

/** May this node promote now? The answer of the pre_promote hook, with its reason. */
export function promotionVerdict(i: PromotionInput): PromotionVerdict {
  const { fence: read, self, ownLsn } = i;
  if (read.kind === "none") return { allow: true, reason: "no stop fence" };
  if (read.kind === "invalid") {
    return {
      allow: false,
      reason: `the stop fence is unreadable (${JSON.stringify(read.raw.slice(0, 80))}); only a fence's own leader may promote: delete the key to override`,
    };
  }
  const f = read.fence;
  if (f.member === self)
    return { allow: true, reason: `${self} is the leader that stopped: it has its own writes` };
  switch (f.state) {
    case "stopping":
      return {
        allow: false,
        reason: `${f.member} is stopping without a handover (since ${f.since}); the cluster waits for it to finish or return`,
      };
    case "handover": {
      if (f.candidate !== self) {
        return { allow: false, reason: `${f.member} is handing over to ${f.candidate}, not to ${self}` };
      }
      if (i.statusOptime === null || ownLsn === null) {
        return {
          allow: false,
          reason: `handover from ${f.member}: ${ownLsn === null ? "this node's WAL position" : "the leader's last position"} is unknown`,
        };
      }
      if (ownLsn < i.statusOptime) {
        return {
          allow: false,
          reason: `handover from ${f.member}: this node has ${formatLsn(ownLsn)}, the leader wrote up to ${formatLsn(i.statusOptime)}`,
        };
      }
      return {
        allow: true,
        reason: `handover from ${f.member}: this node has ${formatLsn(ownLsn)}, at or past the leader's ${formatLsn(i.statusOptime)}`,
      };
    }
    case "stopped":
      if (ownLsn === null) {
        return {
          allow: false,
          reason: `${f.member} stopped at ${formatLsn(f.lsn)}; this node's WAL position is unknown`,
        };
      }
      if (ownLsn < f.lsn) {
        return {
          allow: false,
          reason: `${f.member} stopped at ${formatLsn(f.lsn)} and this node has only ${formatLsn(ownLsn)}; the cluster waits for ${f.member}`,
        };
      }
      return {
        allow: true,
        reason: `${f.member} stopped at ${formatLsn(f.lsn)}; this node has ${formatLsn(ownLsn)}: every write`,
      };
  }
}

/**
 * `pg_controldata` output → the cluster state and the latest checkpoint's position. A leader's
 * fence becomes `stopped` only when the state says "shut down" (a clean stop).
 */
export function parseControlData(text: string): { state: string | null; checkpointLsn: number | null } {
  const field = (name: string): string | null => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}:`));
    return line ? line.slice(name.length + 1).trim() : null;
  };
  const cp = field("Latest checkpoint location");
  return { state: field("Database cluster state"), checkpointLsn: cp === null ? null : parseLsn(cp) };
}
