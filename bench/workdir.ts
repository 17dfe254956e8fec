/** One temp directory per benchmark run for the logs of its child processes; removed after a clean run. */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let root: string | null = null;

/** A fresh directory `<run dir>/<name>-N` for one child process's files. */
export function childDir(name: string): string {
  root ??= mkdtempSync(join(tmpdir(), "pgha-bench-"));
  const dir = mkdtempSync(join(root, `${name}-`));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Removes the run's directory unless `keep`; returns its path when kept. */
export function finishWorkDir(keep: boolean): string | null {
  if (root === null) return null;
  if (keep) return root;
  rmSync(root, { recursive: true, force: true });
  root = null;
  return null;
}
