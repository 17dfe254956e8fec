/**
 * What the operator commands (backup-list, backup-now) and Patroni's hooks
 * (replica creation, restore at bootstrap) need to know about this node's
 * backups: setup.ts writes it beside pgbackrest.conf at start, cli.ts reads
 * it in each command. It holds no secret.
 */
import { readFileSync } from "node:fs";
import { IMAGE_PATHS, localRestApiUrl, POSTGRES_PORT } from "../image.js";
import type { BackupConfig, RestoreConfig } from "./config.js";

/** The node's own PostgreSQL as backups reach it: the two values that are not the image's. */
export interface LocalPostgres {
  readonly dataDir: string;
  /** The superuser pgBackRest and the archive check connect as, over the socket. */
  readonly superuser: string;
  /** The CA file Patroni's REST API is checked with (a copy readable by postgres); null: http. */
  readonly restCaFile?: string | null;
}

export interface BackupJob {
  readonly stanza: string;
  readonly dataDir: string;
  readonly restApi: string;
  /** The CA that signed the REST API's certificate when it speaks https; null for http. */
  readonly restCaFile: string | null;
  readonly postgres: { readonly socketDir: string; readonly port: number; readonly superuser: string };
  readonly replica: {
    readonly enabled: boolean;
    readonly thresholdMb: number;
    readonly thresholdPercent: number;
  };
  readonly restore: Pick<RestoreConfig, "set" | "target"> | null;
}

export function backupJob(b: BackupConfig | null, pg: LocalPostgres): BackupJob | null {
  if (!b) return null;
  return {
    stanza: b.stanza,
    dataDir: pg.dataDir,
    restApi: localRestApiUrl((pg.restCaFile ?? null) !== null),
    restCaFile: pg.restCaFile ?? null,
    postgres: { socketDir: IMAGE_PATHS.socketDir, port: POSTGRES_PORT, superuser: pg.superuser },
    replica: b.replica,
    restore: b.restore ? { set: b.restore.set, target: b.restore.target } : null,
  };
}

/** The job file, or null when backups are not configured in this container. */
export function readBackupJob(path: string): BackupJob | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  const j = JSON.parse(text) as BackupJob;
  return typeof j.stanza === "string" ? j : null;
}

/** `--key=value` and `--flag` arguments into a map; the rest are positional. */
export function parseHookArgs(argv: readonly string[]): { flags: Map<string, string>; rest: string[] } {
  const flags = new Map<string, string>();
  const rest: string[] = [];
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/s.exec(a);
    if (m) flags.set(m[1]!, m[2] ?? "true");
    else rest.push(a);
  }
  return { flags, rest };
}
