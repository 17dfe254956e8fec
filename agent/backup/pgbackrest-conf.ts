/**
 * pgbackrest.conf as a pure function of the backup configuration, and the
 * archive and restore commands PostgreSQL runs. It holds the repository's
 * keys: setup.ts writes it with mode 0600, owned by postgres, where
 * pgbackrest.ts and PostgreSQL's archive_command read it.
 */
import { PGBACKREST_PATHS } from "../image.js";
import type { BackupConfig } from "./config.js";

export interface PgTarget {
  readonly dataDir: string;
  readonly port: number;
  readonly socketDir: string;
  readonly superuser: string;
}

function line(key: string, value: string | number): string {
  const text = String(value);
  // One value per line: a newline would start another option.
  if (/[\r\n]/.test(text)) throw new Error(`pgbackrest.conf: ${key} holds a line break`);
  return `${key}=${text}`;
}

export function renderPgbackrestConf(b: BackupConfig, pg: PgTarget): string {
  const g: string[] = [];
  const repo = b.repo;
  if (repo.type === "s3") {
    g.push(
      line("repo1-type", "s3"),
      line("repo1-path", repo.path),
      line("repo1-s3-bucket", repo.bucket),
      line("repo1-s3-endpoint", repo.endpoint),
      line("repo1-s3-region", repo.region),
      line("repo1-s3-uri-style", repo.uriStyle),
      line("repo1-s3-key", repo.accessKeyId),
      line("repo1-s3-key-secret", repo.secretAccessKey),
    );
    if (repo.port !== undefined) g.push(line("repo1-storage-port", repo.port));
    if (!repo.verifyTls) g.push(line("repo1-storage-verify-tls", "n"));
    if (repo.caFile !== undefined) g.push(line("repo1-storage-ca-file", repo.caFile));
  } else {
    g.push(line("repo1-type", "posix"), line("repo1-path", repo.path));
  }
  if (b.cipherPass !== undefined) {
    g.push(line("repo1-cipher-type", "aes-256-cbc"), line("repo1-cipher-pass", b.cipherPass));
  }
  g.push(line("repo1-retention-full-type", "count"), line("repo1-retention-full", b.retention.full));
  if (b.retention.diff !== undefined) g.push(line("repo1-retention-diff", b.retention.diff));
  g.push(
    line("process-max", b.processMax),
    line("compress-type", b.compressType),
    line("start-fast", "y"),
    // Asynchronous push: WAL waits in the spool, at most archive-push-queue-max of it.
    line("archive-async", "y"),
    line("archive-push-queue-max", b.archive.queueMax),
    line("archive-timeout", b.archive.timeoutSeconds),
    line("io-timeout", b.ioTimeoutSeconds),
    line("spool-path", PGBACKREST_PATHS.spool),
    line("log-path", PGBACKREST_PATHS.log),
    line("log-level-console", "warn"),
    line("log-level-stderr", "off"),
    line("log-level-file", "info"),
  );
  const s = [
    line("pg1-path", pg.dataDir),
    line("pg1-port", pg.port),
    line("pg1-socket-path", pg.socketDir),
    line("pg1-user", pg.superuser),
  ];
  return [
    "# Rendered by the agent at every start from its environment (mode 0600: it holds the repository's keys).",
    "[global]",
    ...g,
    "",
    `[${b.stanza}]`,
    ...s,
    "",
  ].join("\n");
}

/** The commands PostgreSQL runs to archive and fetch WAL. */
export function archiveCommand(stanza: string): string {
  return `pgbackrest --stanza=${stanza} archive-push "%p"`;
}
export function restoreCommand(stanza: string): string {
  return `pgbackrest --stanza=${stanza} archive-get %f "%p"`;
}
