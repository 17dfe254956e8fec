/** What the numbers were measured on: the machine, its load, the versions of everything involved. */
import { execFileSync } from "node:child_process";
import { cpus, hostname, loadavg, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function firstLine(cmd: string, args: string[]): string {
  try {
    const out = execFileSync(cmd, args, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 10_000,
    });
    return out.split("\n")[0]!.trim();
  } catch {
    return "unavailable";
  }
}

export function load(): number[] {
  return loadavg().map((x) => Math.round(x * 100) / 100);
}

export function uptime(): string {
  return firstLine("uptime", []);
}

export function machine(): Record<string, unknown> {
  const c = cpus();
  return {
    date: new Date().toISOString(),
    host: hostname(),
    cpus: `${c.length} x ${c[0]?.model ?? "unknown"}`,
    memoryMb: Math.round(totalmem() / 1024 / 1024),
    kernel: release(),
    node: process.version,
    versions: {
      pgbench: firstLine("pgbench", ["--version"]),
      haproxy: firstLine("haproxy", ["-v"]),
      patroni: firstLine("patroni", ["--version"]),
      etcd: firstLine("etcd", ["--version"]),
    },
    git: {
      commit: firstLine("git", ["-C", ROOT, "rev-parse", "HEAD"]),
      branch: firstLine("git", ["-C", ROOT, "rev-parse", "--abbrev-ref", "HEAD"]),
      dirty: firstLine("git", ["-C", ROOT, "status", "--porcelain", "--untracked-files=no"]) !== "",
    },
    uptimeBefore: uptime(),
    loadBefore: load(),
  };
}
