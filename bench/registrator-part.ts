/**
 * Part 5, the registrator against the real dockerd: runs the registrator's own
 * benchmark (registrator.ts, which carries its in-process baseline) as a child
 * and takes the JSON it prints.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { run } from "../test/harness/proc.js";

const MAIN = fileURLToPath(new URL("./registrator.js", import.meta.url));

/** Pure: the JSON document at the end of the registrator benchmark's output. */
export function lastJsonDocument(stdout: string): Record<string, unknown> {
  const lines = stdout.split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i] !== "{") continue;
    try {
      return JSON.parse(lines.slice(i).join("\n")) as Record<string, unknown>;
    } catch {}
  }
  throw new Error(`no JSON result in the registrator benchmark's output: ${stdout.slice(-300)}`);
}

export async function runRegistrator(o: { starts: number; sync: number }): Promise<Record<string, unknown>> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: the registrator benchmark is not built`);
  const r = await run(process.execPath, [MAIN, "--starts", String(o.starts), "--sync", String(o.sync)], {
    timeoutMs: 30 * 60_000,
  });
  return lastJsonDocument(r.stdout);
}
