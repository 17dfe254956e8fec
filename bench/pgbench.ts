/** pgbench: initialise a database, run one timed round, read its summary. */
import { run } from "../test/harness/proc.js";

export const PGBENCH_BIN = process.env.PGBENCH_BIN ?? "pgbench";

export type Workload = "select-only" | "tpcb-like";

export interface PgbenchResult {
  readonly tps: number;
  /** Average latency per transaction, ms. */
  readonly latencyMs: number;
  readonly transactions: number;
  readonly failed: number;
  readonly connectMs: number;
}

/** Reads pgbench's (15) summary; throws when the figures a round needs are missing. */
export function parsePgbench(out: string): PgbenchResult {
  const num = (re: RegExp): number => {
    const m = re.exec(out);
    return m ? Number(m[1]) : Number.NaN;
  };
  const tps = num(/^tps = ([\d.]+) \(without initial connection time\)/m);
  const latencyMs = num(/^latency average = ([\d.]+) ms/m);
  const transactions = num(/^number of transactions actually processed: (\d+)/m);
  const failed = num(/^number of failed transactions: (\d+)/m);
  const connectMs = num(/^initial connection time = ([\d.]+) ms/m);
  if (!Number.isFinite(tps) || !Number.isFinite(latencyMs) || !Number.isFinite(transactions)) {
    throw new Error(`pgbench output without tps/latency: ${out.trim().split("\n").slice(-6).join(" | ")}`);
  }
  return { tps, latencyMs, transactions, failed: Number.isFinite(failed) ? failed : 0, connectMs };
}

export interface PgConn {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
}

function env(c: PgConn): NodeJS.ProcessEnv {
  return { ...process.env, PGPASSWORD: c.password, PGCONNECT_TIMEOUT: "30" };
}

function target(c: PgConn): string[] {
  return ["-h", c.host, "-p", String(c.port), "-U", c.user, c.database];
}

export async function pgbenchInit(c: PgConn, scale: number): Promise<void> {
  await run(PGBENCH_BIN, ["-i", "-q", "-s", String(scale), ...target(c)], {
    env: env(c),
    timeoutMs: 300_000,
  });
}

/** pgbench threads: one per client up to the machine's cores (pgbench needs -c divisible by -j). */
export function threadsFor(clients: number, cores: number): number {
  let j = Math.max(1, Math.min(clients, cores));
  while (clients % j !== 0) j--;
  return j;
}

export async function pgbenchRound(
  c: PgConn,
  o: { workload: Workload; clients: number; threads: number; seconds: number },
): Promise<PgbenchResult> {
  const args = [
    "-n",
    "-T",
    String(o.seconds),
    "-c",
    String(o.clients),
    "-j",
    String(o.threads),
    ...(o.workload === "select-only" ? ["-S"] : []),
    ...target(c),
  ];
  const r = await run(PGBENCH_BIN, args, { env: env(c), timeoutMs: (o.seconds + 120) * 1000 });
  return parsePgbench(r.stdout);
}
