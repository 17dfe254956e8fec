/**
 * The walkthrough of agent/README.md, run exactly as written: every marked shell block
 * in order (only HOST_IP is set, to this machine's address on Docker's bridge), each
 * check block again until it shows what the text says. After every step, a write with
 * psql and one with node-postgres go to whoever leads, and no acknowledged write (the
 * README's own and the test's) may be missing there. Checks of the parts the text
 * names (the registrator's keys, the member records, the operator's habits inside a
 * node) run after the steps that make them true.
 *
 * The README names its containers (etcd, registrator, john, paul, router), publishes
 * etcd on HOST_IP:2379 and the router on 127.0.0.1:5432: this test needs those free.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import pg from "pg";
import { createEtcdClient } from "../../shared/etcd.js";
import { ACKED_TABLE_SQL, AckWriter, missing, type PgTarget, pgConfig } from "../harness/ack-writers.js";
import {
  bridgeGateway,
  docker,
  dockerExec,
  ensureImages,
  imageOf,
  inspect,
  logsTail,
  publishedPort,
  REPO_ROOT,
} from "../harness/docker.js";
import { run, waitFor } from "../harness/proc.js";
import { type ReadmeBlock, readmeBlocks } from "../harness/readme-blocks.js";

const CONTAINERS = ["etcd", "registrator", "john", "paul", "router"];
const SCOPE = "demo";
const blocks = readmeBlocks(readFileSync(join(REPO_ROOT, "agent", "README.md"), "utf8"), "walkthrough");

let hostIp = "";
let workdir = "";
/** Set once the start found none of the walkthrough's container names taken: after() removes them. */
let ours = false;
let etcd: Etcd3 | null = null;
/** The README's own acknowledged writes to `wt`. */
const readmeRows = new Set<number>();
/** The test's writers: psql (sslmode=prefer) and node-postgres, one write each per step. */
const writers: AckWriter[] = [];
let ackedTable = false;
/** Where the test's writers write now: the current leader. */
let current: PgTarget | null = null;

interface MemberRecord {
  conn_url: string;
  api_url: string;
  role: string;
  state: string;
  timeline?: number;
}

function secrets(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(workdir, "demo.env"), "utf8").split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

async function member(name: string): Promise<MemberRecord | null> {
  const v = await etcd!.get(`/service/${SCOPE}/members/${name}`).string();
  return v === null ? null : (JSON.parse(v) as MemberRecord);
}

async function runningLeader(): Promise<string | null> {
  if (!etcd) return null;
  const l = await etcd.get(`/service/${SCOPE}/leader`).string();
  if (!l) return null;
  const m = await member(l);
  return m && m.role === "primary" && m.state === "running" ? l : null;
}

async function direct(name: string): Promise<PgTarget> {
  const p = await publishedPort(name, 5432);
  return { host: p.host, port: p.port, user: "admin", password: secrets()["POSTGRES_PASSWORD"]! };
}

const PARTS = ["agent", "etcd", "registrator", "router"] as const;

/**
 * The README names the images pgha/<part>:dev; PGHA_<PART>_IMAGE (test/harness/docker.ts) runs
 * the same commands on another build of them, so that a branch's images can be tested beside
 * the ones on this machine. Nothing else in a block is changed.
 */
function withImages(script: string): string {
  let out = script;
  for (const part of PARTS) out = out.replaceAll(`pgha/${part}:dev`, imageOf(part));
  return out;
}

/** Runs a block as the reader would paste it into bash, in the walkthrough's directory. */
async function runBlock(b: ReadmeBlock): Promise<string> {
  const script = withImages(b.script).replace(/^HOST_IP=\S+$/m, `HOST_IP=${hostIp}`);
  const r = await run("bash", ["-e", "-o", "pipefail", "-c", script], {
    cwd: workdir,
    env: { ...process.env, HOST_IP: hostIp },
    timeoutMs: 180_000,
  });
  return r.stdout;
}

/** After a step: one write of each client to the leader, then nothing acknowledged may be missing. */
async function checkAcknowledged(): Promise<string> {
  const leader = await runningLeader().catch(() => null);
  if (!leader) return "no leader (nothing to check)";
  const target = await direct(leader);
  current = target;
  if (!ackedTable) {
    const c = new pg.Client(pgConfig(target));
    await c.connect();
    await c.query(ACKED_TABLE_SQL);
    await c.end();
    ackedTable = true;
    writers.push(
      new AckWriter("walk-psql", "psql per-write", () => current!, 1_000),
      new AckWriter("walk-pg", "pg kept", () => current!, 2_000),
    );
  }
  for (const w of writers) {
    await w.writeOnce();
    await w.stop(); // the kept connection goes to this leader only
  }
  assert.deepEqual(await missing(target, writers), [], `acknowledged writes missing on ${leader}`);
  if (readmeRows.size > 0) {
    const c = new pg.Client(pgConfig(target));
    await c.connect();
    const rows = (await c.query<{ v: number }>("select v from wt")).rows.map((r) => r.v);
    await c.end();
    for (const v of readmeRows) assert.ok(rows.includes(v), `the README's row ${v} is on ${leader}`);
  }
  return `${leader} has all ${writers.reduce((n, w) => n + w.acks.length, 0)} test writes and the README's rows ${[...readmeRows].join(", ") || "-"}`;
}

async function diagnostics(): Promise<string> {
  return (await Promise.all(["john", "paul", "registrator", "router"].map((c) => logsTail(c, 25)))).join(
    "\n",
  );
}

/** Checks of the parts, after the step whose block matches. */
const extraChecks: [RegExp, () => Promise<void>][] = [
  [
    /--name etcd /,
    async () => {
      etcd = createEtcdClient({ hosts: [{ host: hostIp, port: 2379 }] });
      // The registrator advertises etcd's own published port: proof that it is at work.
      await waitFor(
        "the registrator to advertise etcd",
        async () => {
          const kvs = await etcd!.getAll().prefix("/").strings();
          return Object.entries(kvs).some(([k, v]) => k.includes(":etcd:2379") && v === `${hostIp}:2379`);
        },
        { timeoutMs: 60_000 },
      );
    },
  ],
  [/patronictl list/, async () => undefined],
];

async function afterJohnLeads(): Promise<void> {
  const pg5432 = await publishedPort("john", 5432);
  const api = await publishedPort("john", 8008);
  // The registrator advertised john's published ports under the tutorial's keys.
  assert.equal(
    await etcd!.get(`/postgresql-patroni/${hostIp}:john:5432`).string(),
    `${hostIp}:${pg5432.port}`,
  );
  assert.equal(
    await etcd!.get(`/postgresql-patroni-api/${hostIp}:john:8008`).string(),
    `${hostIp}:${api.port}`,
  );
  // john's member record carries its public addresses, role and state.
  const m = await member("john");
  assert.equal(m?.conn_url, `postgres://${hostIp}:${pg5432.port}/postgres`);
  assert.equal(m?.api_url, `http://${hostIp}:${api.port}/patroni`);
  // Patroni 4 (the image's) writes the role `primary`; Patroni 3 wrote `master`.
  assert.equal(m?.role, "primary");
  // The operator's habits inside the container: the image's PostgreSQL 17 and Patroni 4.
  assert.match(await dockerExec("john", ["psql", "--version"]), /PostgreSQL\) 17\./);
  assert.match(await dockerExec("john", ["patroni", "--version"]), /^patroni 4\./);
  assert.equal(
    await dockerExec("john", ["sh", "-c", 'readlink -f "$(command -v patronictl)"']),
    "/usr/local/bin/pgha-patroni",
  );
  const status = JSON.parse(await dockerExec("john", ["curl", "-fsS", "localhost:8008/patroni"])) as {
    role: string;
  };
  assert.equal(status.role, "primary");
  assert.match(await dockerExec("john", ["cat", "/etc/patroni/patroni.yml"]), /scope: "demo"/);
  assert.equal(await dockerExec("john", ["stat", "-c", "%a %U", "/etc/patroni/patroni.yml"]), "600 postgres");
  // Synchronous replication is the image's default.
  const config = JSON.parse(await dockerExec("john", ["curl", "-fsS", "localhost:8008/config"])) as {
    synchronous_mode?: boolean;
  };
  assert.equal(config.synchronous_mode, true);
  // Unsafe REST endpoints want the REST credentials.
  assert.equal(
    await dockerExec("john", [
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-XPOST",
      "localhost:8008/reload",
    ]),
    "401",
  );
  // No backup settings: archiving off, the agent says so.
  assert.equal(await dockerExec("john", ["psql", "-Atc", "show archive_mode"]), "off");
  const listed = await dockerExec("john", ["backup-list"]).then(
    () => "ran",
    (err: Error) => err.message,
  );
  assert.match(listed, /backups are not configured in this container/);
  const metrics = await dockerExec("john", ["curl", "-fsS", "localhost:8009/metrics"]);
  assert.match(metrics, /^pgha_backup_configured 0$/m);
  assert.match(metrics, /^pgha_stop_fence 0$/m);
}

async function afterPaulStreams(): Promise<void> {
  const p = await publishedPort("paul", 5432);
  assert.equal((await member("paul"))?.conn_url, `postgres://${hostIp}:${p.port}/postgres`);
  // A replica's REST status carries its timeline, read over its own replication
  // connection through the socket (peer, as the replication role): no password needed.
  const status = JSON.parse(await dockerExec("paul", ["curl", "-fsS", "localhost:8008/patroni"])) as {
    role: string;
    timeline?: number;
  };
  assert.equal(status.role, "replica");
  assert.equal(status.timeline, 1);
}

async function afterJohnStopped(): Promise<void> {
  // A planned stop: john handed over to paul and exited cleanly.
  const state = await inspect<{ State: { ExitCode: number } }>("john");
  assert.equal(state.State.ExitCode, 0);
  const logs = await run("docker", ["logs", "john"], { timeoutMs: 30_000 });
  assert.match(logs.stdout, /"candidate":"paul".*"msg":"switchover done"/);
}

async function afterJohnBack(): Promise<void> {
  const p = await publishedPort("john", 5432);
  // Rediscovered: the member record follows the port Docker published this time.
  assert.equal((await member("john"))?.conn_url, `postgres://${hostIp}:${p.port}/postgres`);
}

async function afterRemove(): Promise<void> {
  await waitFor(
    "no key of the cluster in etcd",
    async () => {
      const keys = Object.keys(await etcd!.getAll().prefix("/").strings());
      return (
        keys.filter((k) => k.startsWith(`/service/${SCOPE}/`) || /:(john|paul|router):/.test(k)).length === 0
      );
    },
    { timeoutMs: 60_000, intervalMs: 500 },
  );
  etcd!.close();
  etcd = null;
}

function title(b: ReadmeBlock, i: number): string {
  const first = b.script.split("\n").find((l) => !l.startsWith("#") && l.trim() !== "") ?? "";
  const short = first.length > 70 ? `${first.slice(0, 67)}...` : first;
  return `step ${i + 1} (README line ${b.line}): ${b.kind === "until" ? `until ${b.expect}: ` : ""}${short}`;
}

describe("the agent README's walkthrough, as written", { timeout: 30 * 60_000 }, () => {
  before(async () => {
    assert.ok(blocks.length >= 10, `the README has its walkthrough blocks (${blocks.length})`);
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    // The README's commands name the images pgha/<part>:dev (withImages runs another build).
    for (const part of PARTS) {
      assert.match(
        blocks.map((b) => b.script).join("\n"),
        new RegExp(`pgha/${part}:dev`),
        `the README runs pgha/${part}:dev`,
      );
    }
    const existing = (await docker(["ps", "-a", "--format", "{{.Names}}"])).split("\n");
    const taken = CONTAINERS.filter((c) => existing.includes(c));
    assert.deepEqual(
      taken,
      [],
      `containers the README's walkthrough names already exist: ${taken.join(", ")}`,
    );
    ours = true;
    hostIp = await bridgeGateway();
    workdir = mkdtempSync(join(tmpdir(), "walkthrough-"));
  });

  after(async () => {
    etcd?.close();
    // Only containers of this run: never a reader's own walkthrough found at the start.
    if (ours) await docker(["rm", "-f", "-v", ...CONTAINERS]).catch(() => undefined);
    if (workdir) rmSync(workdir, { recursive: true, force: true });
  });

  blocks.forEach((b, i) => {
    it(title(b, i), async () => {
      try {
        if (b.kind === "run") {
          await runBlock(b);
        } else {
          const out = await waitFor(
            `the output to match ${b.expect}`,
            async () => {
              const o = await runBlock(b).catch(() => "");
              return b.expect!.test(o) ? o : null;
            },
            { timeoutMs: 240_000, intervalMs: 2000 },
          );
          for (const m of b.script.matchAll(/insert into wt values \((\d+)\)/g)) readmeRows.add(Number(m[1]));
          if (/\| john .*\| Leader/.test(b.expect!.source)) await afterJohnLeads();
          if (/\| paul .*\| Sync Standby/.test(b.expect!.source)) await afterPaulStreams();
          if (/\| paul .*\| Leader/.test(b.expect!.source)) await afterJohnStopped();
          if (/\| john .*\| Sync Standby/.test(b.expect!.source)) await afterJohnBack();
          console.log(`walkthrough step ${i + 1}: ${out.trim().split("\n").slice(-4).join(" / ")}`);
        }
        for (const [re, check] of extraChecks) if (re.test(b.script) && b.kind === "run") await check();
        if (/etcdctl del --prefix \/service\/demo\//.test(b.script)) await afterRemove();
        console.log(`walkthrough step ${i + 1}: ${await checkAcknowledged()}`);
      } catch (err) {
        (err as Error).message += `\n${await diagnostics()}`;
        throw err;
      }
    });
  });
});
