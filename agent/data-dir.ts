/**
 * The data directory's PostgreSQL major version, checked before anything
 * touches the directory. PostgreSQL writes its major version into `PG_VERSION`
 * when it creates a data directory, and a server of another major refuses to
 * start on it; Patroni, seeing a server that does not start, may go on to
 * re-create the directory (a replica) or leave the cluster without its leader.
 * So the agent reads `PG_VERSION` first and stops with one line when it names
 * another major than the image's: nothing is started on the directory and
 * nothing in it is changed. agent/README.md, "Moving to a new PostgreSQL
 * major", says how to move the data.
 *
 * `dataDirVerdict` is pure; `readPgVersion` is the one read.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PROGRAM } from "./options.js";

/** Where agent/README.md explains the move from one major to another. */
export const MOVE_DATA_DOC = 'agent/README.md, "Moving to a new PostgreSQL major"';

export type DataDirVerdict =
  | { readonly ok: true; readonly reason: string }
  | { readonly ok: false; readonly message: string };

/** `PG_VERSION`'s text, or null when the file does not exist (no data directory yet, or an empty one). */
export function readPgVersion(dataDir: string): string | null {
  try {
    return readFileSync(join(dataDir, "PG_VERSION"), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    // Unreadable for another reason: say so rather than guess.
    return `unreadable (${(err as NodeJS.ErrnoException).code ?? "error"})`;
  }
}

/**
 * May Patroni run PostgreSQL `imageMajor` on this data directory? `pgVersion` is the text of its
 * `PG_VERSION` (null: there is none). The refusal is the one line the operator reads.
 */
export function dataDirVerdict(
  dataDir: string,
  pgVersion: string | null,
  imageMajor: number,
): DataDirVerdict {
  if (pgVersion === null) return { ok: true, reason: "no PG_VERSION: a new data directory" };
  const text = pgVersion.trim();
  if (!/^\d+$/.test(text)) {
    return {
      ok: false,
      message: `${PROGRAM}: the data directory ${dataDir} has a PG_VERSION this agent cannot read (${JSON.stringify(text.slice(0, 40))}); it is left as it is and PostgreSQL ${imageMajor} is not started on it (see ${MOVE_DATA_DOC})`,
    };
  }
  const major = Number(text);
  if (major === imageMajor) return { ok: true, reason: `created by PostgreSQL ${major}, as this image runs` };
  return {
    ok: false,
    message: `${PROGRAM}: the data directory ${dataDir} was created by PostgreSQL ${major}, this image runs PostgreSQL ${imageMajor}: it is left as it is and not started. Move the data with pg_dumpall from a PostgreSQL ${major} image and restore it into a new PostgreSQL ${imageMajor} cluster (${MOVE_DATA_DOC})`,
  };
}
