/**
 * Patroni's before_stop hook against a real PostgreSQL and a real etcd: on a
 * planned stop (Patroni's failover key announces a switchover) the real
 * `pgha-before-stop` script (curl on the agent's unix socket, as Patroni runs
 * it) returns only once no client is left in its start-up, which the agent reads
 * from the backends' process titles (and from children of the postmaster not yet
 * named: a client in its SSL negotiation). A client held in its authentication (it
 * sent its start-up, got the server's SCRAM request and has not answered) keeps
 * the hook waiting until it goes; one that never goes is waited for up to the
 * bound, and the metric and the answer say so. Without an announcement (a leader
 * that lost etcd and demotes itself, a restart), or with etcd down, the hook
 * answers at once.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import { FenceStore } from "../../agent/fence-store.js";
import { PromotionCheckServer } from "../../agent/promotion-check.js";
import {
  ANNOUNCEMENT_DEADLINE_MS,
  backendsInStartUp,
  drainStartUps,
  pgProcesses,
  withinDeadline,
} from "../../agent/startup-drain.js";
import { createEtcdClient, type Etcd3 } from "../../shared/etcd.js";
import { createLogger } from "../../shared/logger.js";
import { sleep } from "../../shared/time.js";
import { ROOT } from "../harness/bins.js";
import { EtcdServer } from "../harness/etcd.js";
import { HOST_PG_BIN_DIR } from "../harness/patroni-runtime.js";
import { freePort } from "../harness/ports.js";
import { run, waitFor } from "../harness/proc.js";

const SCRIPT = join(ROOT, "agent", "bin", "pgha-before-stop");
const silent = createLogger({ name: "test", level: "silent" });
const asPostgres = ["--reuid=postgres", "--regid=postgres", "--init-groups"];

let dir: string;
let data: string;
let port: number;
let registry: Registry;
let server: PromotionCheckServer;
let socket: string;
const MAX_MS = 3000;
const SCOPE = "drain";
const FAILOVER_KEY = `/service/${SCOPE}/failover`;
let etcd: EtcdServer;
let client: Etcd3;

async function announce(on: boolean): Promise<void> {
  if (on) await client.put(FAILOVER_KEY).value(JSON.stringify({ leader: "john", member: "paul" }));
  else await client.delete().key(FAILOVER_KEY);
}

/** Runs the hook as Patroni does; resolves with its exit code and what it printed. */
function hook(): { done: Promise<{ code: number | null; out: string }>; finished: () => boolean } {
  let over = false;
  const done = new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(SCRIPT, [], { env: { PATH: process.env["PATH"] ?? "", PGHA_AGENT_SOCKET: socket } });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => {
      over = true;
      resolve({ code, out });
    });
  });
  return { done, finished: () => over };
}

/**
 * A client that sends its start-up and stops answering once the server asks for its password;
 * resolves once its backend's title says it is in its authentication.
 */
async function stalledInAuthentication(): Promise<Socket> {
  const s = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
  const params = Buffer.from("user\0postgres\0database\0postgres\0\0");
  const head = Buffer.alloc(8);
  head.writeInt32BE(8 + params.length, 0);
  head.writeInt32BE(196608, 4);
  s.write(Buffer.concat([head, params]));
  const first = await new Promise<Buffer>((resolve, reject) => s.once("data", resolve).once("error", reject));
  assert.equal(String.fromCharCode(first[0]!), "R", "the server asks for authentication");
  await waitFor("the backend's title", () => backendsInStartUp(pgProcesses()) >= 1, { timeoutMs: 10_000 });
  return s;
}

/**
 * A client that sends its SSLRequest, reads the answer and sends nothing more: its backend is
 * not named yet (PostgreSQL names it after the StartupMessage), as while a TLS handshake runs.
 */
async function stalledInNegotiation(): Promise<Socket> {
  const before = backendsInStartUp(pgProcesses());
  const s = connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
  const ssl = Buffer.alloc(8);
  ssl.writeInt32BE(8, 0);
  ssl.writeInt32BE(80877103, 4);
  s.write(ssl);
  const answer = await new Promise<Buffer>((resolve, reject) =>
    s.once("data", resolve).once("error", reject),
  );
  assert.equal(String.fromCharCode(answer[0]!), "N", "this server has no TLS and says so");
  await waitFor("the unnamed backend", () => backendsInStartUp(pgProcesses()) > before, {
    timeoutMs: 10_000,
  });
  return s;
}

/** Runs the hook to its end; its exit code must be 0. Resolves with its answer and how long the agent took. */
async function answer(): Promise<{ outcome: string; ms: number }> {
  const r = await hook().done;
  assert.equal(r.code, 0, r.out);
  const m = /^(\w+) in (\d+) ms/.exec(r.out);
  assert.ok(m, r.out);
  return { outcome: m[1]!, ms: Number(m[2]) };
}

async function metric(outcome: string): Promise<number> {
  const m = (await registry.getSingleMetric("pgha_before_stop_total")?.get())?.values ?? [];
  return m.find((v) => v.labels["outcome"] === outcome)?.value ?? 0;
}

describe("the before_stop hook against a real PostgreSQL", { timeout: 120_000 }, () => {
  before(async () => {
    etcd = await EtcdServer.start();
    client = createEtcdClient({ hosts: [{ host: "127.0.0.1", port: etcd.clientPort }] });
    const fence = new FenceStore(client, "/service/", SCOPE);
    dir = mkdtempSync(join(tmpdir(), "before-stop-"));
    data = join(dir, "data");
    chownSync(dir, ...(await ids()));
    writeFileSync(join(dir, "pw"), "not-a-real-secret\n");
    chownSync(join(dir, "pw"), ...(await ids()));
    await run("setpriv", [
      ...asPostgres,
      join(HOST_PG_BIN_DIR, "initdb"),
      "-D",
      data,
      "-A",
      "scram-sha-256",
      "-U",
      "postgres",
      `--pwfile=${join(dir, "pw")}`,
    ]);
    port = await freePort();
    await run("setpriv", [
      ...asPostgres,
      join(HOST_PG_BIN_DIR, "pg_ctl"),
      "-D",
      data,
      "-w",
      "-l",
      join(dir, "log"),
      "-o",
      `-c listen_addresses=127.0.0.1 -c port=${port} -c unix_socket_directories=${dir} -c authentication_timeout=20s`,
      "start",
    ]);
    socket = join(dir, "run", "agent.sock");
    registry = new Registry();
    server = new PromotionCheckServer({
      self: "john",
      fence: {
        read: async () => ({ read: { kind: "none" }, modRevision: "0" }),
        statusOptime: async () => null,
      },
      walPosition: async () => null,
      socketPath: socket,
      gid: null,
      registry,
      log: silent,
      beforeStop: () =>
        drainStartUps(
          {
            primary: () => true,
            stopSequenceRunning: () => false,
            switchoverAnnounced: () =>
              withinDeadline(() => fence.switchoverAnnounced(), ANNOUNCEMENT_DEADLINE_MS),
            processes: pgProcesses,
            now: () => Date.now(),
            sleep: (ms) => sleep(ms),
          },
          { noticeMs: 50, maxMs: MAX_MS, pollMs: 20 },
        ),
    });
    await server.start();
  });

  after(async () => {
    await server?.close();
    if (data) {
      await run("setpriv", [
        ...asPostgres,
        join(HOST_PG_BIN_DIR, "pg_ctl"),
        "-D",
        data,
        "-m",
        "immediate",
        "stop",
      ]).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
    client?.close();
    await etcd?.destroy();
  });

  it("a client in its authentication shows as one backend in start-up", async () => {
    const s = await stalledInAuthentication();
    assert.ok(backendsInStartUp(pgProcesses()) >= 1);
    s.destroy();
    await waitFor("the backend gone", () => backendsInStartUp(pgProcesses()) === 0, { timeoutMs: 10_000 });
  });

  it("no switchover announced: the hook answers at once, a client in its authentication or not", async () => {
    await announce(false);
    const s = await stalledInAuthentication();
    try {
      const a = await answer();
      assert.equal(a.outcome, "unplanned");
      assert.ok(a.ms < MAX_MS, `${a.ms} ms`);
      assert.equal(await metric("unplanned"), 1);
    } finally {
      s.destroy();
    }
  });

  it("a failover key Patroni cleared (`{}`, as it leaves it after every switchover) announces nothing", async () => {
    await client.put(FAILOVER_KEY).value("{}");
    const s = await stalledInAuthentication();
    try {
      const a = await answer();
      assert.equal(a.outcome, "unplanned");
      assert.equal(await metric("unplanned"), 2);
    } finally {
      s.destroy();
    }
  });

  /** With a switchover announced, the hook waits while `stalled`'s client is there, and answers `drained` once it goes. */
  async function waitsWhile(stalled: () => Promise<Socket>, what: string): Promise<void> {
    await announce(true);
    const s = await stalled();
    const drainedBefore = await metric("drained");
    const h = hook();
    await sleep(600);
    assert.equal(h.finished(), false, `the hook still waits while the client is ${what}`);
    s.destroy();
    const r = await h.done;
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^drained in \d+ ms/);
    assert.equal(await metric("drained"), drainedBefore + 1);
  }

  it("the hook waits while a client authenticates, and answers once it has gone", () =>
    waitsWhile(stalledInAuthentication, "in its authentication"));

  it("the hook waits for a client still in its SSL negotiation (a backend not named yet), and answers once it has gone", () =>
    waitsWhile(stalledInNegotiation, "in its SSL negotiation"));

  it("a client that never finishes is waited for only up to the bound; the answer and the metric say so", async () => {
    const s = await stalledInAuthentication();
    try {
      const a = await answer();
      assert.equal(a.outcome, "timed_out");
      assert.ok(a.ms >= MAX_MS, `${a.ms} ms`);
      assert.equal(await metric("timed_out"), 1);
    } finally {
      s.destroy();
    }
  });

  it("etcd down: no announcement can be read, and the hook answers within the deadline instead of waiting", async () => {
    await announce(true);
    await etcd.stop();
    const s = await stalledInAuthentication();
    try {
      const a = await answer();
      assert.equal(a.outcome, "unplanned");
      assert.ok(a.ms < MAX_MS, `${a.ms} ms`);
    } finally {
      s.destroy();
      await etcd.start();
    }
  });

  it("no agent listening: the script still exits 0 (Patroni goes on with the stop)", async () => {
    const child = spawn(SCRIPT, [], {
      env: { PATH: process.env["PATH"] ?? "", PGHA_AGENT_SOCKET: join(dir, "nobody.sock") },
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    assert.equal(code, 0);
  });
});

async function ids(): Promise<[number, number]> {
  const [uid, gid] = await Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  return [Number(uid.stdout.trim()), Number(gid.stdout.trim())];
}
