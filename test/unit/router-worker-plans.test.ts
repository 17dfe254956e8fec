/**
 * A router worker fed by its supervisor's plans over IPC (router/ipc.ts,
 * router/ipc-source.ts), with a real Router in the data role, a real listener and a
 * real upstream: a client is held until the first plan arrives, then goes where the
 * plan routes; a plan that pauses holds the next client; messages the worker cannot
 * use are logged, counted in router_ipc_bad_messages_total and ignored, the worker
 * serving on. The channel is an EventEmitter standing in for the IPC pipe: a real
 * supervisor never sends a bad message, so the fault is injected here.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { type RouteMessage, serveSupervisor, type ToSupervisor } from "../../router/ipc.js";
import { IpcRoutes, workerSide } from "../../router/ipc-source.js";
import { liteMetrics } from "../../router/lite-metrics.js";
import { type RouterConfig, routerSpec } from "../../router/options.js";
import type { RouteDecisions } from "../../router/route.js";
import { Router } from "../../router/router.js";
import { parseArgs } from "../../shared/config.js";
import { createLogger } from "../../shared/logger.js";
import type { PrefixSnapshot } from "../../shared/watch.js";

function config(): RouterConfig {
  const r = parseArgs(
    routerSpec,
    ["--scope", "demo", "--listen", "127.0.0.1:15432", "--replica-listen", "off"],
    {},
  );
  return (r as { config: RouterConfig }).config;
}

const SNAP: PrefixSnapshot = { revision: 7, kvs: new Map() };

function plan(decided: RouteDecisions, listen: { host: string; port: number }): RouteMessage {
  return {
    t: "pgha:route",
    spec: { scope: "demo", listen, replicaListen: null, source: "flag" } as RouteMessage["spec"],
    plan: { snapshot: SNAP, state: "live", health: new Map(), decided },
  };
}

/** A StartupMessage (protocol 3.0) for user and database `postgres`. */
function startup(): Buffer {
  const body = Buffer.from("user\0postgres\0database\0postgres\0\0");
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(196608, 4);
  body.copy(b, 8);
  return b;
}

/** Connects, sends a StartupMessage, resolves with what the upstream answered (or "closed"). */
function ask(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1", () => s.write(startup()));
    s.once("data", (d) => {
      resolve(d.toString());
      s.destroy();
    });
    s.once("close", () => resolve("closed"));
    s.once("error", () => undefined);
  });
}

describe("a router worker on its supervisor's plans", () => {
  let upstream: net.Server;
  let upstreamPort: number;
  let router: Router;
  let source: IpcRoutes;
  const channel = new EventEmitter();
  const sent: ToSupervisor[] = [];
  const logs: { msg: string; problem?: string }[] = [];

  before(async () => {
    // Answers a client's start-up (replayed by the router) with its name.
    upstream = net.createServer((s) => s.once("data", (d) => s.write(d.equals(startup()) ? "pg1" : "?")));
    await new Promise<void>((res) => upstream.listen(0, "127.0.0.1", res));
    upstreamPort = (upstream.address() as net.AddressInfo).port;
    const log = createLogger({ name: "router", level: "info" }, { write: (l) => logs.push(JSON.parse(l)) });
    source = new IpcRoutes(log);
    router = new Router(config(), log, liteMetrics(), { admin: false, source });
    await router.start();
    serveSupervisor(
      workerSide(router, source, { shutdown: () => undefined, orphaned: () => undefined }),
      log,
      Object.assign(channel, { send: (m: ToSupervisor) => sent.push(m) }),
    );
  });

  after(async () => {
    await router.close();
    upstream.close();
  });

  it("says hello, holds a client until a plan routes, then sends it where the plan says", async () => {
    assert.deepEqual(sent, [{ t: "pgha:hello" }]);
    const target = { name: "pg1", host: "127.0.0.1", port: upstreamPort, apiUrl: null };
    const pause: RouteDecisions = {
      primary: { action: "none", target: null, reason: "no leader" },
      replicas: { eligible: [], excluded: [], reason: "none" },
      awaiting: [],
    };
    channel.emit("message", plan(pause, { host: "127.0.0.1", port: 0 }));
    await router.settled();
    const port = router.address("demo")?.port;
    assert.ok(port);
    const held = ask(port);
    while (router.routesView().routes[0]?.held.primary !== 1) await new Promise((res) => setTimeout(res, 10));
    channel.emit(
      "message",
      plan(
        { ...pause, primary: { action: "route", target, reason: "pg1 leads" } },
        { host: "127.0.0.1", port: 0 },
      ),
    );
    assert.equal(await held, "pg1");
    assert.equal(await ask(port), "pg1");
    assert.equal(router.routesView().routes[0]?.primary.target, "pg1");
  });

  it("a bad message: one log line, router_ipc_bad_messages_total, and the worker serves on", async () => {
    const bad: unknown[] = [
      "garbage",
      null,
      { t: "pgha:launch" },
      { t: "pgha:route", spec: { scope: "demo" } },
      { ...plan({} as RouteDecisions, { host: "127.0.0.1", port: 0 }) },
      { t: "pgha:query", id: "x", what: "metrics" },
    ];
    for (const m of bad) channel.emit("message", m);
    const lines = logs.filter((l) => l.msg === "bad message from the router supervisor; ignored");
    assert.equal(lines.length, bad.length);
    assert.ok(lines.every((l) => typeof l.problem === "string" && l.problem.length > 0));
    const metrics = await router.registry.getMetricsAsJSON();
    const counted = metrics.find((m) => m.name === "router_ipc_bad_messages_total")?.values[0]?.value;
    assert.equal(counted, bad.length);
    const port = router.address("demo")?.port;
    assert.equal(await ask(port!), "pg1");
    // The queries still get answers.
    channel.emit("message", { t: "pgha:query", id: 1, what: "readiness" });
    while (!sent.some((m) => m.t === "pgha:answer")) await new Promise((res) => setTimeout(res, 10));
    assert.deepEqual(
      sent.filter((m) => m.t === "pgha:answer").map((m) => (m as { id: number }).id),
      [1],
    );
  });
});
