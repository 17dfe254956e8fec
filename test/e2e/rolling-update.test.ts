/**
 * An update of every image applied with the stack's own command (scripts/stack-up.sh, as
 * `./pgha up` runs it) while the stack serves: every etcd member, the registrator, the
 * router and the three agents are replaced one at a time, and writers through the router
 * (psql and node-postgres, per-write and kept) lose nothing and see no failed new
 * connection. How long writes stopped is printed (the benchmark holds the target).
 *
 * Played in both synchronous modes the README offers for three nodes: `true` (the compose
 * stack's default: one synchronous standby) and `quorum` (the multi-host default: Patroni's
 * replicas are `quorum_standby`), since the update waits for each replaced agent by its role.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, missing, pgConfig, startWriters, summary } from "../harness/ack-writers.js";
import { AGENTS, ComposeStack, ETCD_MEMBERS } from "../harness/compose.js";
import { docker, ensureImages, imageOf, REPO_ROOT, uniquePrefix } from "../harness/docker.js";
import { run } from "../harness/proc.js";

const PARTS = ["agent", "etcd", "registrator", "router"] as const;
const tagPrefix = uniquePrefix("pgha-roll").slice(0, -1);
const tagOf = (part: (typeof PARTS)[number]) => `${tagPrefix}/${part}:v`;
let stack: ComposeStack;

/** A new image under the same tag: the old one plus a label, so its ID changes. */
async function rebuild(tag: string, version: number): Promise<string> {
  await run(
    "sh",
    [
      "-c",
      `printf 'FROM %s\\nLABEL pgha.test.version=%s\\n' "$0" "$1" | docker build -q -t "$0" -`,
      tag,
      String(version),
    ],
    {
      timeoutMs: 120_000,
    },
  );
  return docker(["image", "inspect", "-f", "{{.Id}}", tag]);
}

for (const mode of ["true", "quorum"] as const)
  describe(`a rolling update of every image under writers (synchronous_mode ${mode})`, {
    timeout: 20 * 60_000,
  }, () => {
    before(async () => {
      await ensureImages([...PARTS]);
      for (const p of PARTS) await docker(["tag", imageOf(p), tagOf(p)]);
      stack = await ComposeStack.up("roll", {
        cli: "v2",
        env: {
          PGHA_AGENT_IMAGE: tagOf("agent"),
          PGHA_ETCD_IMAGE: tagOf("etcd"),
          PGHA_REGISTRATOR_IMAGE: tagOf("registrator"),
          PGHA_ROUTER_IMAGE: tagOf("router"),
          SWITCHOVER_TIMEOUT: "10",
          PATRONI_SYNCHRONOUS_MODE: mode,
        },
      });
      await stack.waitReady();
      const config = await stack.rest<{ synchronous_mode?: unknown }>((await stack.leader())!, "/config");
      assert.equal(String(config.synchronous_mode), mode, "the stack was created in this synchronous mode");
      const c = new pg.Client(pgConfig(stack.pg()));
      await c.connect();
      await c.query(ACKED_TABLE_SQL);
      await c.end();
    });

    after(async () => {
      await stack?.destroy();
      await docker(["image", "rm", ...PARTS.map(tagOf)]).catch(() => undefined);
    });

    it("./pgha up on the running stack replaces every part one at a time: nothing lost, no failed new connection", async () => {
      const ids = Object.fromEntries(
        await Promise.all(PARTS.map(async (p) => [p, await rebuild(tagOf(p), 2)] as const)),
      );
      const writers = startWriters(() => stack.pg(), "roll");
      const t0 = Date.now();
      let out: { stdout: string; stderr: string };
      try {
        await new Promise((r) => setTimeout(r, 3000));
        out = await run(`${REPO_ROOT}/scripts/stack-up.sh`, ["--no-build"], {
          cwd: REPO_ROOT,
          // The stack's images are this test's tags, also when PGHA_<PART>_IMAGE in the test's
          // own environment names others (the environment wins over the env file).
          env: {
            ...process.env,
            PGHA_ENV_FILE: stack.envFile,
            PGHA_COMPOSE: "v2",
            ...Object.fromEntries(PARTS.map((p) => [`PGHA_${p.toUpperCase()}_IMAGE`, tagOf(p)])),
          },
          timeoutMs: 15 * 60_000,
        });
        await new Promise((r) => setTimeout(r, 3000));
      } finally {
        await Promise.all(writers.map((w) => w.stop()));
      }
      console.log(
        out.stderr
          .split("\n")
          .filter((l) => l.includes("update"))
          .join("\n"),
      );
      // Every part now runs its new image.
      const services = [...ETCD_MEMBERS, "registrator", "router", ...AGENTS];
      for (const svc of services) {
        const part = svc.startsWith("etcd")
          ? "etcd"
          : svc.startsWith("pg")
            ? "agent"
            : (svc as "registrator" | "router");
        const image = await docker(["inspect", "-f", "{{.Image}}", await stack.container(svc)]);
        assert.equal(image, ids[part], `${svc} runs the new ${part} image`);
      }
      const leader = (await stack.leader())!;
      const lost = await missing({ ...stack.pg(), host: await stack.ipOf(leader), port: 5432 }, writers);
      const stopped = Math.max(...writers.map((w) => w.longestGapMs(t0)));
      const failedNew = writers.flatMap((w) =>
        w.failures.filter((f) => f.phase === "connect").map((f) => `${w.kind}: ${f.error}`),
      );
      console.log(
        `rolling update (synchronous_mode ${mode}): writes stopped ${(stopped / 1000).toFixed(1)} s at most; ${failedNew.length} failed new connections; ${lost.length} acknowledged writes lost\n  ${summary(writers, t0)}`,
      );
      assert.deepEqual(lost, []);
      assert.deepEqual(failedNew, [], "no new connection fails");
    });
  });
