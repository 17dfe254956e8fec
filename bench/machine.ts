/** What the numbers were measured on: the machine, its load, the versions of everything involved. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
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

function cpuTimes(): { busy: number; total: number } {
  const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "")
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Share of all cores busy over `ms` (0..1), from /proc/stat: the others' load before the run starts its own. */
export async function cpuBusy(ms: number): Promise<number> {
  const a = cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuTimes();
  const total = b.total - a.total;
  return total > 0 ? Math.round(((b.busy - a.busy) / total) * 100) / 100 : Number.NaN;
}
