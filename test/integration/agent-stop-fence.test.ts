/**
 * The stop fence's moving parts against a real etcd: the agent's pre-promote
 * server answered through the real `pgha-pre-promote` script (curl on a unix
 * socket, as Patroni runs it), for no fence, a stopping leader, a handover and a
 * clean stop; etcd down (refuse: fail closed); and the keeper that lifts the
 * fence only for a leader running as primary, and never a fence written after
 * it read one.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import { FenceKeeper } from "../../agent/fence-keeper.js";
import { FenceStore } from "../../agent/fence-store.js";
import { PromotionCheckServer } from "../../agent/promotion-check.js";
import { createEtcdClient, type Etcd3 } from "../../shared/etcd.js";
import { createLogger } from "../../shared/logger.js";
import { decodePatroniStatus, type PatroniStatus } from "../../shared/patroni-rest.js";
import { EtcdServer } from "../harness/etcd.js";

const ROOT = new URL("../../..", import.meta.url).pathname;
const SCRIPT = join(ROOT, "agent", "bin", "pgha-pre-promote");
const silent = createLogger({ name: "test", level: "silent" });
const SCOPE = "fence";
const FENCE_KEY = `/service/${SCOPE}/pgha-fence`;
const LSN = 0x3000060;

let etcd: EtcdServer;
let client: Etcd3;
let dir: string;
let server: PromotionCheckServer;
let socket: string;
/** This node's WAL position as its Patroni would report it. */
let ownLsn: number | null = LSN;

/** Runs the hook as Patroni does; resolves with its exit code and what it printed. */
function hook(): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(SCRIPT, [], { env: { PATH: process.env["PATH"] ?? "", PGHA_AGENT_SOCKET: socket } });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => resolve({ code, out, ms: performance.now() - t0 }));
  });
}

async function setFence(value: Record<string, unknown> | null): Promise<void> {
  if (value === null) await client.delete().key(FENCE_KEY);
  else await client.put(FENCE_KEY).value(JSON.stringify({ since: new Date().toISOString(), ...value }));
}

describe("the stop fence against a real etcd", { timeout: 120_000 }, () => {
  before(async () => {
    etcd = await EtcdServer.start();
    client = createEtcdClient({ hosts: [{ host: "127.0.0.1", port: etcd.clientPort }] });
    dir = mkdtempSync(join(tmpdir(), "fence-"));
    socket = join(dir, "run", "agent.sock");
    server = new PromotionCheckServer({
      self: "paul",
      fence: new FenceStore(client, "/service/", SCOPE),
      walPosition: async () => ownLsn,
      socketPath: socket,
      gid: null,
      registry: new Registry(),
      log: silent,
    });
    await server.start();
  });

  after(async () => {
    await server?.close();
    client?.close();
    await etcd?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the socket is open to its owner and group only", () => {
    assert.equal(statSync(socket).mode & 0o777, 0o660);
    assert.equal(statSync(join(dir, "run")).mode & 0o777, 0o750);
  });

  it("no fence: the hook exits 0", async () => {
    await setFence(null);
    const r = await hook();
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /allowed: no stop fence/);
    console.log(`pre-promote without a fence: ${r.ms.toFixed(1)} ms (curl and one etcd read)`);
  });

  it("a stopping leader: a replica is refused, with the reason", async () => {
    await setFence({ state: "stopping", member: "john" });
    const r = await hook();
    assert.notEqual(r.code, 0);
    assert.match(r.out, /refused: john is stopping without a handover/);
  });

  it("a handover to this node: allowed once it has the leader's last position", async () => {
    await setFence({ state: "handover", member: "john", candidate: "paul" });
    await client.put(`/service/${SCOPE}/status`).value(JSON.stringify({ optime: LSN }));
    ownLsn = LSN + 0x68;
    const ok = await hook();
    assert.equal(ok.code, 0, ok.out);
    console.log(`pre-promote in a handover: ${ok.ms.toFixed(1)} ms`);
    ownLsn = LSN - 8;
    const short = await hook();
    assert.notEqual(short.code, 0);
    assert.match(short.out, /the leader wrote up to 0\/3000060/);
  });

  it("a handover to another node is refused", async () => {
    await setFence({ state: "handover", member: "john", candidate: "ringo" });
    ownLsn = LSN + 100;
    const r = await hook();
    assert.notEqual(r.code, 0);
    assert.match(r.out, /handing over to ringo, not to paul/);
  });

  it("a clean stop: allowed with every write, refused without", async () => {
    await setFence({ state: "stopped", member: "john", lsn: LSN });
    ownLsn = LSN;
    assert.equal((await hook()).code, 0);
    ownLsn = LSN - 1;
    const r = await hook();
    assert.notEqual(r.code, 0);
    assert.match(r.out, /the cluster waits for john/);
    ownLsn = null;
    assert.notEqual((await hook()).code, 0, "an unknown position is refused");
  });

  it("an unreadable fence is refused", async () => {
    await client.put(FENCE_KEY).value("{not json");
    const r = await hook();
    assert.notEqual(r.code, 0);
    assert.match(r.out, /unreadable/);
  });

  it("the keeper lifts the fence for a leader running as primary, and only then", async () => {
    const store = new FenceStore(client, "/service/", SCOPE);
    let status: PatroniStatus | null = decodePatroniStatus({ role: "replica", state: "running" });
    const keeper = new FenceKeeper({
      self: "paul",
      apiUrl: "http://127.0.0.1:8008/patroni",
      fence: store,
      status: async () => status,
      registry: new Registry(),
      log: silent,
    });
    await setFence({ state: "stopped", member: "john", lsn: LSN });
    await client.put(`/service/${SCOPE}/leader`).value("paul");
    await keeper.check();
    assert.notEqual(await client.get(FENCE_KEY).string(), null, "kept while this node is a replica");
    status = decodePatroniStatus({ role: "master", state: "running" });
    await client.put(`/service/${SCOPE}/leader`).value("ringo");
    await keeper.check();
    assert.notEqual(await client.get(FENCE_KEY).string(), null, "kept while another node holds the lock");
    await client.put(`/service/${SCOPE}/leader`).value("paul");
    await keeper.check();
    assert.equal(await client.get(FENCE_KEY).string(), null, "lifted once this node leads as primary");
  });

  it("the fence's own leader, back while nobody leads, puts itself into failsafe mode's member list", async () => {
    // A replica that held the lock for a moment (refused by the fence) rewrote the list without it.
    const store = new FenceStore(client, "/service/", SCOPE);
    const failsafe = `/service/${SCOPE}/failsafe`;
    const keeper = new FenceKeeper({
      self: "john",
      apiUrl: "http://10.0.0.1:8008/patroni",
      fence: store,
      status: async () => decodePatroniStatus({ role: "replica", state: "running" }),
      registry: new Registry(),
      log: silent,
    });
    await client.delete().key(`/service/${SCOPE}/leader`);
    await setFence({ state: "stopped", member: "john", lsn: LSN });
    await client.put(failsafe).value(JSON.stringify({ paul: "http://10.0.0.2:8008/patroni" }));
    await keeper.check();
    assert.deepEqual(JSON.parse((await client.get(failsafe).string()) ?? "{}"), {
      paul: "http://10.0.0.2:8008/patroni",
      john: "http://10.0.0.1:8008/patroni",
    });
    // Never while somebody holds the lock, and never for a node the fence does not name.
    await client.put(failsafe).value(JSON.stringify({ paul: "http://10.0.0.2:8008/patroni" }));
    await client.put(`/service/${SCOPE}/leader`).value("paul");
    await keeper.check();
    assert.deepEqual(Object.keys(JSON.parse((await client.get(failsafe).string()) ?? "{}")), ["paul"]);
    await client.delete().key(`/service/${SCOPE}/leader`);
    await setFence({ state: "stopped", member: "ringo", lsn: LSN });
    await keeper.check();
    assert.deepEqual(Object.keys(JSON.parse((await client.get(failsafe).string()) ?? "{}")), ["paul"]);
    await client.delete().key(failsafe);
  });

  it("the keeper never deletes a fence written after it read one", async () => {
    const store = new FenceStore(client, "/service/", SCOPE);
    await setFence({ state: "stopped", member: "john", lsn: LSN });
    const read = await store.read();
    await setFence({ state: "stopping", member: "paul" });
    assert.equal(await store.deleteIf(read.modRevision!), false);
    assert.match((await client.get(FENCE_KEY).string()) ?? "", /"stopping"/);
  });

  it("etcd down: refused (fail closed)", async () => {
    await setFence(null);
    await etcd.stop();
    try {
      const r = await hook();
      assert.notEqual(r.code, 0);
      assert.match(r.out, /refused: etcd did not answer/);
    } finally {
      await etcd.start();
    }
  });
});
