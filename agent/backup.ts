/**
 * The backup hook of the rendered patroni.yml: WAL archiving and how replicas
 * are created. Archiving is off and replicas are cloned with pg_basebackup until
 * a pgBackRest repository is configured; pgBackRest itself is installed in the
 * image. This is the one place that configuration plugs in (archive_command,
 * restore_command, a `pgbackrest` create_replica_method).
 */

export interface BackupSettings {
  /** PostgreSQL parameters merged into bootstrap.dcs.postgresql.parameters. */
  readonly parameters: Readonly<Record<string, string>>;
  /** postgresql.create_replica_methods, tried in order. */
  readonly createReplicaMethods: readonly string[];
  /** Extra sections of `postgresql` keyed by method name (e.g. `basebackup` options). */
  readonly methodOptions: Readonly<Record<string, unknown>>;
}

export function backupSettings(): BackupSettings {
  return Object.freeze({
    parameters: Object.freeze({ archive_mode: "off" }),
    createReplicaMethods: Object.freeze(["basebackup"]),
    methodOptions: Object.freeze({
      // pg_basebackup --checkpoint=fast: do not wait for the next scheduled checkpoint.
      basebackup: [{ checkpoint: "fast" }],
    }),
  });
}
