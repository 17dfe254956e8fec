/**
 * The services' command-line entry points as package.json declares them (`bin`), and a
 * reader for the `--help` text that shared/config.ts prints, for tests of the CLI contract.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The repository root (this file runs from dist/test/harness/). */
export const ROOT = new URL("../../..", import.meta.url).pathname;

export interface ServiceBin {
  /** The bin name, e.g. `router`. */
  readonly name: string;
  /** The built entry point, relative to the root, e.g. `dist/router/main.js`. */
  readonly path: string;
  /** The TypeScript source it is built from, relative to the root. */
  readonly source: string;
  readonly built: boolean;
  readonly sourceExists: boolean;
}

export function serviceBins(root = ROOT): ServiceBin[] {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
    bin?: Record<string, string>;
  };
  return Object.entries(pkg.bin ?? {}).map(([name, path]) => {
    const source = path.replace(/^dist\//, "").replace(/\.js$/, ".ts");
    return {
      name,
      path,
      source,
      built: existsSync(join(root, path)),
      sourceExists: existsSync(join(root, source)),
    };
  });
}

export interface HelpOption {
  /** The flag without its dash(es), e.g. `scope`. */
  readonly flag: string;
  /** The flag as the help text spells it, e.g. `-scope` or `--scope`. */
  readonly spelled: string;
  /** The value placeholder, e.g. `HOST:PORT`; empty for a boolean switch. */
  readonly metavar: string;
  /** The bracketed facts: `env X`, `default Y`, `required`, `repeatable`. */
  readonly facts: readonly string[];
  readonly env: string | undefined;
}

/** Reads the options out of a `--help` text (`  -flag METAVAR` then `      text [facts]`). */
export function parseHelp(text: string): HelpOption[] {
  const lines = text.split("\n");
  const out: HelpOption[] = [];
  for (let i = 0; i < lines.length; i++) {
    const head = /^ {2}(--?([\w-]+))(?: (\S+))?$/.exec(lines[i]!);
    if (!head || head[2] === "help") continue;
    const facts = /\[([^\]]*)\]\s*$/.exec(lines[i + 1] ?? "")?.[1]?.split("; ") ?? [];
    const env = facts.find((f) => f.startsWith("env "))?.slice(4);
    out.push({ flag: head[2]!, spelled: head[1]!, metavar: head[3] ?? "", facts, env });
  }
  return out;
}

export interface Exit {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end and reports its exit code and output, whatever the code. */
export function runToExit(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<Exit> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 30_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : null) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** A minimal environment, so that no variable of the test run reaches the service's config. */
export function cleanEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, LANG: "C.UTF-8" };
}

/** A value each typed placeholder rejects, with the words its error must carry. */
export const INVALID_BY_METAVAR: Readonly<Record<string, string>> = {
  N: "not-a-number",
  DURATION: "soon",
  "HOST:PORT": "localhost:99999",
  "HOST:PORT[,...]": "localhost:99999",
};

/** Maps over items with at most `limit` calls in flight, keeping the order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
