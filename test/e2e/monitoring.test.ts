/**
 * The compose stack's `monitoring` profile: Prometheus scrapes the router,
 * the registrator, etcd, every Patroni and every agent, all targets up, it
 * evaluates every alert rule without error, and it holds
 * the router's primary-changes metric and the age of the last good backup
 * (the stack backs up to its shared posix volume here).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { ComposeStack, type ComposeStack as Stack } from "../harness/compose.js";
import { ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

let stack: Stack;

interface Target {
  labels: { job: string; instance: string };
  health: string;
  lastError: string;
}

async function prom<T>(path: string): Promise<T> {
  const res = await fetch(`${stack.prometheusUrl}${path}`, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { status: string; data: T };
  if (body.status !== "success") throw new Error(`${path}: ${JSON.stringify(body)}`);
  return body.data;
}

describe("the monitoring profile", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router", "prometheus", "alertmanager"]);
    stack = await ComposeStack.up("monitoring", {
      profiles: ["monitoring"],
      cli: "v2",
      env: { BACKUP_POSIX_PATH: "/backup" },
    });
    await stack.waitReady();
  });

  after(async () => {
    await stack?.destroy();
  });

  it("Prometheus reports every target up: router, registrator, etcd, each Patroni and each agent", async () => {
    // The agents' targets (Patroni's and their own metrics) come from the registrator's service
    // discovery, named by the agent's compose service and exposed port, as the alerts name them.
    // They appear once the registrator has published the agents and Prometheus has refreshed
    // its discovery (every 10 s): wait for the whole set, every one up.
    const expected = [
      "agent pg1:8009",
      "agent pg2:8009",
      "agent pg3:8009",
      "etcd etcd1:2381",
      "etcd etcd2:2381",
      "etcd etcd3:2381",
      "patroni pg1:8008",
      "patroni pg2:8008",
      "patroni pg3:8008",
      "prometheus localhost:9090",
      "registrator registrator:8080",
      "router router:8080",
    ];
    let last: Target[] = [];
    const instances = () => last.map((t) => `${t.labels.job} ${t.labels.instance}`).sort();
    try {
      await waitFor(
        "every target found and up",
        async () => {
          last = (await prom<{ activeTargets: Target[] }>("/api/v1/targets?state=active")).activeTargets;
          return (
            JSON.stringify(instances()) === JSON.stringify(expected) && last.every((t) => t.health === "up")
          );
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
    } catch (err) {
      (err as Error).message += `\n${JSON.stringify(last, null, 2)}`;
      throw err;
    }
    assert.deepEqual(instances(), expected);
    // Patroni's own metrics arrive: exactly one primary among the three.
    const primaries = await prom<{ result: { value: [number, string] }[] }>(
      `/api/v1/query?query=${encodeURIComponent("sum(patroni_primary)")}`,
    );
    assert.equal(primaries.result[0]?.value[1], "1");
  });

  it("Prometheus has loaded the alert rules and evaluates each without error", async () => {
    interface RuleState {
      name: string;
      health: string;
      lastError?: string;
    }
    let last: RuleState[] = [];
    try {
      await waitFor(
        "every rule evaluated",
        async () => {
          const data = await prom<{ groups: { rules: RuleState[] }[] }>("/api/v1/rules?type=alert");
          last = data.groups.flatMap((g) => g.rules);
          return last.length > 0 && last.every((r) => r.health !== "unknown");
        },
        { timeoutMs: 60_000, intervalMs: 1000 },
      );
    } catch (err) {
      (err as Error).message += `\n${JSON.stringify(last, null, 2)}`;
      throw err;
    }
    assert.ok(
      last.some((r) => r.name === "PgHaNoRoutablePrimary"),
      "the rules of prometheus/alerts.yml",
    );
    const failing = last.filter((r) => r.health !== "ok").map((r) => `${r.name}: ${r.lastError}`);
    assert.deepEqual(failing, []);
  });

  it("Prometheus has the age of the last good backup and the archive's health from the agents", async () => {
    const query = async (q: string) =>
      (
        await prom<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(
          `/api/v1/query?query=${encodeURIComponent(q)}`,
        )
      ).result;
    const ages = await waitFor(
      "the agents to report a good backup",
      async () => {
        const r = await query("pgha_backup_last_good_age_seconds");
        return r.length === 3 ? r : null;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    for (const a of ages) assert.ok(Number(a.value[1]) >= 0, JSON.stringify(a));
    // An archive attempt can fail while the cluster is being set up (before the stanza
    // exists); PostgreSQL retries the segment, and the archive must then report healthy.
    await waitFor(
      "every agent's archive to report healthy",
      async () => (await query("sum(pgha_archive_failing)"))[0]?.value[1] === "0",
      { timeoutMs: 180_000, intervalMs: 2000 },
    );
    const schedulers = await query("sum(pgha_backup_scheduler_active)");
    assert.equal(schedulers[0]?.value[1], "1", "one node, the leader, runs the schedule");
  });

  it("Prometheus has the router's primary-changes metric, and sees it count a switchover", async () => {
    const findName = async (): Promise<string | null> => {
      const names = await prom<string[]>("/api/v1/label/__name__/values");
      return names.find((n) => /^router_.*primary_changes/.test(n)) ?? null;
    };
    const total = async (name: string): Promise<number> => {
      const r = await prom<{ result: { metric: Record<string, string>; value: [number, string] }[] }>(
        `/api/v1/query?query=${encodeURIComponent(`sum(${name}{job="router"})`)}`,
      );
      return r.result.length === 0 ? 0 : Number(r.result[0]!.value[1]);
    };
    // A counter with labels has no series until it first counts: absent means 0.
    const name0 = await findName();
    const before = name0 === null ? 0 : await total(name0);

    const leader = (await stack.leader())!;
    const candidate = (await stack.members()).find((m) => m.role === "sync_standby")!.name;
    const r = await stack.restPost(leader, "/switchover", { leader, candidate });
    assert.equal(r.status, 200, r.text);

    const name = await waitFor(
      "Prometheus to see the router count the new primary",
      async () => {
        const n = await findName();
        return n !== null && (await total(n)) > before ? n : null;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    assert.match(name, /^router_primary_changes/);
  });
});
