/**
 * CPU profile of the router under pgbench select-only, 8 clients: the router runs
 * with `node --cpu-prof`, pgbench drives it, SIGTERM makes it write the profile.
 * Its workers inherit the flag and each write their own; the data path is theirs, so
 * the profile kept is the busiest worker's (the most samples not idle), or the one
 * process's with --workers 0. The .cpuprofile is kept beside the results (open it in
 * Chrome DevTools or speedscope for a flame graph) and summarised here as self time
 * per function.
 */
import { copyFileSync, readdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { basename, join } from "node:path";
import { RouterProc } from "./endpoints.js";
import type { Lab } from "./lab.js";
import { pgbenchRound, threadsFor } from "./pgbench.js";
import { round } from "./stats.js";

interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly hitCount?: number;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly CpuProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
}

export interface SelfTime {
  readonly fn: string;
  readonly where: string;
  readonly selfMs: number;
  /** Share of all samples, idle included (%). */
  readonly pct: number;
  /** Share of the samples where the router was not idle (%). */
  readonly busyPct: number;
}

/** Pure: self time per function (summed over the call sites of the same function), most first. */
export function selfTimes(p: CpuProfile, top = 15): SelfTime[] {
  const hits = new Map<number, number>();
  if (p.samples && p.samples.length > 0) for (const id of p.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  else for (const n of p.nodes) hits.set(n.id, n.hitCount ?? 0);
  const total = [...hits.values()].reduce((a, b) => a + b, 0);
  const msPerHit = total > 0 ? (p.endTime - p.startTime) / 1000 / total : 0;
  const byFn = new Map<string, { fn: string; where: string; hits: number }>();
  for (const n of p.nodes) {
    const h = hits.get(n.id) ?? 0;
    if (h === 0) continue;
    const fn = n.callFrame.functionName || "(anonymous)";
    const where = n.callFrame.url ? `${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}` : "";
    const k = `${fn} ${where}`;
    const e = byFn.get(k) ?? { fn, where, hits: 0 };
    e.hits += h;
    byFn.set(k, e);
  }
  const idle = byFn.get("(idle) ")?.hits ?? 0;
  return [...byFn.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, top)
    .map((e) => ({
      fn: e.fn,
      where: e.where,
      selfMs: round(e.hits * msPerHit, 0),
      pct: round((100 * e.hits) / total, 1),
      busyPct: e.fn === "(idle)" ? Number.NaN : round((100 * e.hits) / (total - idle), 1),
    }));
}

export interface Inclusive {
  readonly fn: string;
  readonly where: string;
  /** Share of all samples with this function on the stack (%). */
  readonly pct: number;
}

/**
 * Pure: the share of samples with each of our own functions (url containing `mark`)
 * on the stack, most first: where the native time above is spent from.
 */
export function inclusiveTimes(p: CpuProfile, mark = "/router/", top = 8): Inclusive[] {
  const parent = new Map<number, number>();
  const byId = new Map<number, CpuProfileNode>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const counts = new Map<string, { fn: string; where: string; hits: number }>();
  const samples = p.samples ?? [];
  for (const id of samples) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cf = byId.get(cur)?.callFrame;
      if (!cf?.url.includes(mark)) continue;
      const fn = cf.functionName || "(anonymous)";
      const where = `${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
      const k = `${fn} ${where}`;
      if (seen.has(k)) continue;
      seen.add(k);
      const e = counts.get(k) ?? { fn, where, hits: 0 };
      e.hits++;
      counts.set(k, e);
    }
  }
  return [...counts.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, pct: round((100 * e.hits) / Math.max(1, samples.length), 1) }));
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, "");
  const i = u.indexOf("/dist/");
  if (i !== -1) return u.slice(i + 6);
  return u.startsWith("node:") ? u : basename(u);
}

export async function runProfile(
  lab: Lab,
  o: { seconds: number; scale: number; resultsDir: string; stamp: string },
  log: (m: string) => void,
): Promise<{ tps: number; profile: string; top: SelfTime[]; inclusive: Inclusive[] }> {
  await lab.pgbenchTables(o.scale);
  const r = await RouterProc.start({
    etcd: lab.cluster.etcd.endpoint,
    scope: lab.cluster.scope,
    nodeArgs: ["--cpu-prof"],
  });
  let tps = Number.NaN;
  try {
    const res = await pgbenchRound(lab.pg(r.port), {
      workload: "select-only",
      clients: 8,
      threads: threadsFor(8, cpus().length),
      seconds: o.seconds,
    });
    tps = res.tps;
  } finally {
    await r.stop("SIGTERM");
  }
  const files = readdirSync(r.dir).filter((f) => f.endsWith(".cpuprofile"));
  const { file, busy } = busiestProfile(r.dir, files, r.pid);
  const kept = join(o.resultsDir, `${o.stamp}-router.cpuprofile`);
  copyFileSync(join(r.dir, file), kept);
  const p = JSON.parse(readFileSync(kept, "utf8")) as CpuProfile;
  log(
    `profile: ${Math.round(tps)} tps through the profiled router; the busiest of ${files.length} process(es) ` +
      `(pid ${profilePid(file)}, ${busy} busy samples) in ${kept}`,
  );
  return { tps: round(tps, 0), profile: kept, top: selfTimes(p), inclusive: inclusiveTimes(p) };
}

/** The pid in Node's profile name `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`. */
export function profilePid(file: string): number {
  return Number(file.split(".")[3]);
}

/**
 * The profile of the process that carried the traffic: among the profiles of every process but
 * the supervisor `pid` (the one process itself with --workers 0), the one with the most samples
 * not idle.
 */
function busiestProfile(dir: string, files: readonly string[], pid: number): { file: string; busy: number } {
  const candidates = files.length === 1 ? files : files.filter((f) => profilePid(f) !== pid);
  let best: { file: string; busy: number } | null = null;
  for (const file of candidates) {
    const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    const idle = new Set(p.nodes.filter((n) => n.callFrame.functionName === "(idle)").map((n) => n.id));
    const busy = (p.samples ?? []).filter((id) => !idle.has(id)).length;
    if (best === null || busy > best.busy) best = { file, busy };
  }
  if (best === null) throw new Error(`the router's workers wrote no .cpuprofile in ${dir}`);
  return best;
}
