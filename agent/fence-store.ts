/**
 * The stop fence in etcd: read, write, delete-if-unchanged, plus the two
 * Patroni keys a fence decision needs (the leader and `/status`). Every
 * etcd error becomes an EtcdError naming the operation.
 */
import type { Etcd3 } from "../shared/etcd.js";
import { toEtcdError } from "../shared/etcd.js";
import { agentKeys, patroniKeys } from "../shared/keys.js";
import { failoverAnnounced } from "../shared/patroni.js";
import { decodeFence, encodeFence, type Fence, type FenceRead } from "./fence.js";

export interface FenceRecord {
  readonly read: FenceRead;
  /** etcd's mod_revision of the key; null when there is none. */
  readonly modRevision: string | null;
}

export class FenceStore {
  readonly key: string;
  private readonly leaderKey: string;
  private readonly statusKey: string;
  private readonly failsafeKey: string;
  private readonly failoverKey: string;

  constructor(
    private readonly etcd: Etcd3,
    namespace: string,
    scope: string,
  ) {
    this.key = agentKeys.fence(namespace, scope);
    this.leaderKey = patroniKeys.leader(namespace, scope);
    this.statusKey = patroniKeys.status(namespace, scope);
    this.failsafeKey = patroniKeys.failsafe(namespace, scope);
    this.failoverKey = patroniKeys.failover(namespace, scope);
  }

  /** The member holding Patroni's leader key, or null. */
  async leader(): Promise<string | null> {
    try {
      const v = await this.etcd.get(this.leaderKey).string();
      return v === null || v.trim() === "" ? null : v.trim();
    } catch (err) {
      throw toEtcdError(err, "get leader", { key: this.leaderKey });
    }
  }

  /** True while Patroni's failover key announces a switchover (REST, patronictl, the agent's handover); `{}` is a cleared key. */
  async switchoverAnnounced(): Promise<boolean> {
    try {
      return failoverAnnounced(await this.etcd.get(this.failoverKey).string());
    } catch (err) {
      throw toEtcdError(err, "get failover", { key: this.failoverKey });
    }
  }

  async read(): Promise<FenceRecord> {
    try {
      const res = await this.etcd.get(this.key).exec();
      const kv = res.kvs[0];
      if (!kv) return { read: { kind: "none" }, modRevision: null };
      return { read: decodeFence(kv.value.toString("utf8")), modRevision: kv.mod_revision };
    } catch (err) {
      throw toEtcdError(err, "get stop fence", { key: this.key });
    }
  }

  /** `/status` optime: the leader's last reported position (its checkpoint after a clean shutdown). */
  async statusOptime(): Promise<number | null> {
    let raw: string | null;
    try {
      raw = await this.etcd.get(this.statusKey).string();
    } catch (err) {
      throw toEtcdError(err, "get status", { key: this.statusKey });
    }
    if (raw === null) return null;
    try {
      const v = (JSON.parse(raw) as { optime?: unknown }).optime;
      return typeof v === "number" && Number.isSafeInteger(v) ? v : null;
    } catch {
      // Patroni before 2.1 wrote the bare number.
      const n = Number(raw.trim());
      return Number.isSafeInteger(n) ? n : null;
    }
  }

  /**
   * Adds `name` to failsafe mode's member list if it is missing, only if the list did not
   * change since it was read and nobody holds the leader key; true when written.
   */
  async joinFailsafe(name: string, apiUrl: string): Promise<boolean> {
    try {
      const [fs, leader] = await Promise.all([
        this.etcd.get(this.failsafeKey).exec(),
        this.etcd.get(this.leaderKey).exec(),
      ]);
      const kv = fs.kvs[0];
      if (!kv || leader.kvs.length > 0) return false;
      let members: unknown;
      try {
        members = JSON.parse(kv.value.toString("utf8"));
      } catch {
        return false; // Patroni ignores a list it cannot read
      }
      if (typeof members !== "object" || members === null || Array.isArray(members)) return false;
      if (name in members) return false;
      const value = JSON.stringify({ ...(members as Record<string, unknown>), [name]: apiUrl });
      const res = await this.etcd
        .if(this.failsafeKey, "Mod", "==", kv.mod_revision)
        .and(this.leaderKey, "Create", "==", 0)
        .then(this.etcd.put(this.failsafeKey).value(value))
        .commit();
      return res.succeeded;
    } catch (err) {
      throw toEtcdError(err, "join failsafe list", { key: this.failsafeKey });
    }
  }

  async write(fence: Fence): Promise<void> {
    try {
      await this.etcd.put(this.key).value(encodeFence(fence));
    } catch (err) {
      throw toEtcdError(err, "put stop fence", { key: this.key, state: fence.state });
    }
  }

  /** Deletes the fence only if nobody wrote it since `modRevision` was read; true when deleted. */
  async deleteIf(modRevision: string): Promise<boolean> {
    try {
      const res = await this.etcd
        .if(this.key, "Mod", "==", modRevision)
        .then(this.etcd.delete().key(this.key))
        .commit();
      return res.succeeded;
    } catch (err) {
      throw toEtcdError(err, "delete stop fence", { key: this.key });
    }
  }
}
