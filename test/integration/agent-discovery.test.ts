/**
 * The agent's self-discovery against a real etcd: the registrator's keys
 * appear after a while and the agent takes them; they never appear and the
 * entrypoint exits 3 with a line naming both keys; a SIGTERM while it waits
 * ends it at once with 0.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { AddressSource } from "../../agent/config.js";
import { resolveAddresses } from "../../agent/discovery.js";
import { createLogger } from "../../shared/logger.js";
import { EtcdServer } from "../harness/etcd.js";

const ROOT = new URL("../../..", import.meta.url).pathname;
const silent = createLogger({ name: "test", level: "silent" });

let etcd: EtcdServer;

const source = (container: string, timeoutSeconds = 20): Extract<AddressSource, { kind: "registry" }> => ({
  kind: "registry",
  dockerHostname: "192.168.99.100",
  containerName: container,
  prefix: "/services",
  service5432: "postgresql-patroni",
  service8008: "postgresql-patroni-api",
  timeoutSeconds,
});

/** Runs the built entrypoint with only the given environment; resolves with its exit and output. */
function runAgent(
  env: Record<string, string>,
  opts: { signalAfterMs?: number } = {},
): Promise<{ code: number | null; out: string; ms: number }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [join(ROOT, "dist", "agent", "main.js")], {
      env: { PATH: process.env["PATH"] ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
    });
    child.stderr.on("data", (d) => {
      out += d;
    });
    if (opts.signalAfterMs !== undefined) setTimeout(() => child.kill("SIGTERM"), opts.signalAfterMs);
    child.on("exit", (code) => resolve({ code, out, ms: Date.now() - t0 }));
  });
}

describe("agent self-discovery with a real etcd", () => {
  before(async () => {
    etcd = await EtcdServer.start();
  });
  after(async () => {
    await etcd?.destroy();
  });

  it("takes the registrator's addresses once both keys appear", async () => {
    const c = etcd.client();
    const pending = resolveAddresses(
      source("john"),
      { hosts: [{ host: "127.0.0.1", port: etcd.clientPort }] },
      silent,
    );
    await new Promise((r) => setTimeout(r, 700));
    await c.put("/services/postgresql-patroni/192.168.99.100:john:5432").value("192.168.99.100:40000");
    await new Promise((r) => setTimeout(r, 400));
    await c.put("/services/postgresql-patroni-api/192.168.99.100:john:8008").value("192.168.99.100:40001");
    assert.deepEqual(await pending, {
      postgres: { host: "192.168.99.100", port: 40000 },
      api: { host: "192.168.99.100", port: 40001 },
    });
  });

  const agentEnv = (extra: Record<string, string>) => ({
    NAME: "paul",
    PATRONI_SCOPE: "demo",
    ETCD_HOST_PORT: etcd.endpoint,
    DOCKER_HOSTNAME: "192.168.99.100",
    REGISTRY_PREFIX: "/services",
    POSTGRES_USERNAME: "admin",
    POSTGRES_PASSWORD: "admin-secret-pw",
    REPLICATION_PASSWORD: "repl-secret-pw",
    SUPERUSER_PASSWORD: "super-secret-pw",
    RESTAPI_PASSWORD: "rest-secret-pw",
    PG_MAJOR: "17",
    ...extra,
  });

  it("exits 3 after DISCOVERY_TIMEOUT with a line naming the exact keys, and no secret", async () => {
    const r = await runAgent(agentEnv({ DISCOVERY_TIMEOUT: "2" }));
    assert.equal(r.code, 3, r.out);
    const last = r.out.trim().split("\n").pop()!;
    const line = JSON.parse(last) as { level: string; msg: string };
    assert.equal(line.level, "error");
    assert.ok(line.msg.includes("/services/postgresql-patroni/192.168.99.100:paul:5432"), line.msg);
    assert.ok(line.msg.includes("/services/postgresql-patroni-api/192.168.99.100:paul:8008"), line.msg);
    assert.match(r.out, /"msg":"waiting for the registrator to publish this container's ports"/);
    for (const pw of ["admin-secret-pw", "repl-secret-pw", "super-secret-pw", "rest-secret-pw"]) {
      assert.ok(!r.out.includes(pw), `${pw} never logged`);
    }
  });

  it("a SIGTERM while waiting ends the agent at once with 0", async () => {
    const r = await runAgent(agentEnv({ DISCOVERY_TIMEOUT: "60" }), { signalAfterMs: 1500 });
    assert.equal(r.code, 0, r.out);
    assert.ok(r.ms < 30_000, `exited after ${r.ms} ms, long before the 60 s discovery timeout`);
  });

  it("a missing setting exits 2 with one line naming it", async () => {
    const env = agentEnv({});
    delete (env as Record<string, string>)["PATRONI_SCOPE"];
    const r = await runAgent(env);
    assert.equal(r.code, 2);
    assert.equal(r.out.trim(), "agent: missing required -scope or PATRONI_SCOPE: expected a non-empty value");
  });
});
