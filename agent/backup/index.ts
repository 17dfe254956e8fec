/**
 * Backups with pgBackRest, as the rest of the agent sees them: this is the
 * package's one door. The agent's option table takes `backupOptions` and
 * `buildBackupConfig` turns their values into a BackupConfig; patroni.yml takes
 * `backupSettings`; at start the agent calls `writeBackupFiles`, then
 * `startBackups` once Patroni runs.
 *
 * The dependency goes one way: nothing in backup/ imports the agent's core;
 * it takes a BackupConfig and the few values of the node it needs as
 * arguments, and the image's fixed paths and ports from agent/image.ts. The
 * operator commands and Patroni's hooks (cli.ts, agent/bin/pgha-backup) run in
 * their own process and read what the agent wrote for them (job.ts).
 */
export { BACKUP_FILE_BACKED, type BackupConfig, buildBackupConfig } from "./config.js";
export type { LocalPostgres } from "./job.js";
export { type BackupOptions, backupOptions } from "./options.js";
export { type BackupSettings, backupSettings } from "./patroni-settings.js";
export {
  type BackupFilesIo,
  type FileOwner,
  type RunningBackups,
  type StartBackups,
  startBackups,
  writeBackupFiles,
} from "./setup.js";
