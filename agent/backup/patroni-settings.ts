/**
 * The backup part of the rendered patroni.yml: WAL archiving, where replicas
 * come from, and how a new cluster is bootstrapped. Without a repository:
 * archiving off, replicas cloned with pg_basebackup, clusters made by initdb.
 * With one: WAL archived by pgBackRest, replicas restored from the latest
 * backup when that is cheaper than copying the leader (else pg_basebackup),
 * and, when a restore is asked for, a new cluster restored from the repository.
 * agent/patroni-config.ts puts it into patroni.yml; Patroni then runs the
 * commands it names (pgbackrest-conf.ts, cli.ts).
 */
import { PGBACKREST_PATHS } from "../image.js";
import type { BackupConfig, RestoreConfig } from "./config.js";
import { archiveCommand, restoreCommand } from "./pgbackrest-conf.js";

/** Patroni's name for our replica and bootstrap method. */
export const PGBACKREST_METHOD = "pgbackrest";

export interface BackupSettings {
  /** PostgreSQL parameters in the node's own configuration (they win over the cluster's). */
  readonly parameters: Readonly<Record<string, string | number>>;
  /** postgresql.recovery_conf: how a replica fetches WAL that its leader no longer has. */
  readonly recoveryConf: Readonly<Record<string, string>> | undefined;
  /** postgresql.create_replica_methods, tried in order. */
  readonly createReplicaMethods: readonly string[];
  /** Extra sections of `postgresql` keyed by method name (e.g. `basebackup` options). */
  readonly methodOptions: Readonly<Record<string, unknown>>;
  /** bootstrap.method and its section; undefined for initdb. */
  readonly bootstrap: Readonly<Record<string, unknown>> | undefined;
}

const BASEBACKUP_OPTIONS = Object.freeze([{ checkpoint: "fast" }]);

/** PostgreSQL's recovery settings for a restore: the target, and promotion when it is reached. */
export function recoveryTarget(stanza: string, r: RestoreConfig): Record<string, string> {
  const out: Record<string, string> = {
    restore_command: restoreCommand(stanza),
    recovery_target_timeline: r.timeline,
  };
  const t = r.target;
  if (t.type === "latest") return out;
  out[`recovery_target_${t.type}`] = t.value;
  out["recovery_target_action"] = "promote";
  if (t.type !== "name") out["recovery_target_inclusive"] = r.inclusive ? "on" : "off";
  return out;
}

export function backupSettings(b: BackupConfig | null): BackupSettings {
  if (b === null) {
    return Object.freeze({
      parameters: Object.freeze({ archive_mode: "off" }),
      recoveryConf: undefined,
      createReplicaMethods: Object.freeze(["basebackup"]),
      // pg_basebackup --checkpoint=fast: do not wait for the next scheduled checkpoint.
      methodOptions: Object.freeze({ basebackup: BASEBACKUP_OPTIONS }),
      bootstrap: undefined,
    });
  }
  const methods = b.replica.enabled ? [PGBACKREST_METHOD, "basebackup"] : ["basebackup"];
  const methodOptions: Record<string, unknown> = { basebackup: BASEBACKUP_OPTIONS };
  if (b.replica.enabled) {
    // Exits non-zero when the backup is too far behind (or there is none): Patroni then tries basebackup.
    methodOptions[PGBACKREST_METHOD] = {
      command: `${PGBACKREST_PATHS.cli} replica`,
      keep_data: true,
      // Patroni 4 reads no_leader only (3.x read no_master too): the method works without a leader.
      no_leader: 1,
    };
  }
  let bootstrap: Record<string, unknown> | undefined;
  if (b.restore) {
    bootstrap = {
      method: PGBACKREST_METHOD,
      [PGBACKREST_METHOD]: {
        command: `${PGBACKREST_PATHS.cli} restore`,
        keep_existing_recovery_conf: false,
        recovery_conf: recoveryTarget(b.stanza, b.restore),
      },
    };
  }
  return Object.freeze({
    parameters: Object.freeze({
      archive_mode: "on",
      archive_command: archiveCommand(b.stanza),
      archive_timeout: b.archive.switchSeconds,
    }),
    recoveryConf: Object.freeze({ restore_command: restoreCommand(b.stanza) }),
    createReplicaMethods: Object.freeze(methods),
    methodOptions: Object.freeze(methodOptions),
    bootstrap,
  });
}
