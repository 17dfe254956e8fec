/**
 * The container tracker's ordering rules, with Docker replaced by a scripted
 * inspect (the rules are about timing, which a real daemon cannot be made to
 * reproduce): one inspect per container at a time, a burst of events coalesced
 * into one more look, the last look winning, a vanished container skipped with a
 * warning and a counter, and a full sync looking at known containers that are no
 * longer listed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import type { ContainerEvent } from "../../registrator/docker-events.js";
import type { LifecycleOptions, Observation } from "../../registrator/lifecycle.js";
import { RegistratorMetrics } from "../../registrator/metrics.js";
import type { Service } from "../../registrator/service-model.js";
import { ContainerTracker } from "../../registrator/tracker.js";
import { createLogger } from "../../shared/logger.js";
import { type Loose, mutableFixture } from "../harness/fixtures.js";

const ID = "a".repeat(64);
const opts: LifecycleOptions = {
  hostname: "h",
  prefix: "/p",
  internal: false,
  explicit: false,
  tags: [],
  deregister: "always",
  requireHealthy: false,
};
const log = createLogger({ name: "test", level: "silent" });

function running(port: string): Observation {
  const c: Loose = mutableFixture("registrator/single.json");
  c["Id"] = ID;
  c["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"] = port;
  return { kind: "found", inspect: c };
}
function stopped(): Observation {
  const c: Loose = mutableFixture("registrator/exited.json");
  c["Id"] = ID;
  return { kind: "found", inspect: c };
}

/** An inspect whose answers the test hands out one at a time. */
class ScriptedDocker {
  readonly pending: { id: string; resolve: (o: Observation) => void }[] = [];
  inFlight = new Map<string, number>();
  maxInFlightPerId = 0;
  listed: string[] = [];
  inspect = (id: string): Promise<Observation> => {
    const n = (this.inFlight.get(id) ?? 0) + 1;
    this.inFlight.set(id, n);
    this.maxInFlightPerId = Math.max(this.maxInFlightPerId, n);
    return new Promise((resolve) => {
      this.pending.push({
        id,
        resolve: (o) => {
          this.inFlight.set(id, (this.inFlight.get(id) ?? 1) - 1);
          resolve(o);
        },
      });
    });
  };
  async answer(o: Observation): Promise<void> {
    for (let i = 0; i < 50 && this.pending.length === 0; i++) await new Promise((r) => setImmediate(r));
    const next = this.pending.shift();
    assert.ok(next, "an inspect is waiting");
    next.resolve(o);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }
}

function setup() {
  const docker = new ScriptedDocker();
  const published: { id: string; services: readonly Service[] }[] = [];
  const metrics = new RegistratorMetrics(new Registry());
  const tracker = new ContainerTracker(
    {
      inspect: docker.inspect,
      listRunning: async () => docker.listed,
      publish: (id, services) => published.push({ id, services }),
      isConnected: () => true,
    },
    opts,
    log,
    metrics,
  );
  const ev = (action: ContainerEvent["action"]): ContainerEvent => ({ id: ID, action });
  const counter = async (reason: string) =>
    (await metrics.skipped.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  return { docker, published, tracker, ev, counter };
}

describe("ContainerTracker", () => {
  it("inspects one container once at a time and coalesces a burst into one more look", async () => {
    const { docker, published, tracker, ev } = setup();
    tracker.onEvent(ev("start"));
    tracker.onEvent(ev("kill"));
    tracker.onEvent(ev("die"));
    tracker.onEvent(ev("start"));
    await docker.answer(running("1111")); // the look started by the first event
    await docker.answer(running("2222")); // one look for the three queued events
    assert.equal(docker.pending.length, 0, "no third inspect");
    assert.equal(docker.maxInFlightPerId, 1);
    assert.deepEqual(
      published.map((p) => p.services.map((s) => s.value)),
      [["127.0.0.1:1111"], ["127.0.0.1:2222"]],
      "the last look wins",
    );
  });

  it("publishes nothing for a stopped container and deregisters one that stops", async () => {
    const { docker, published, tracker, ev } = setup();
    tracker.onEvent(ev("start"));
    await docker.answer(running("1111"));
    tracker.onEvent(ev("die"));
    await docker.answer(stopped());
    assert.deepEqual(
      published.map((p) => p.services.length),
      [1, 0],
    );
  });

  it("a container that vanished before its inspect: skipped with a counter; a destroy is no vanish", async () => {
    const { docker, published, tracker, ev, counter } = setup();
    tracker.onEvent(ev("start"));
    await docker.answer({ kind: "gone" });
    assert.equal(await counter("vanished"), 1);
    assert.deepEqual(
      published.map((p) => p.services.length),
      [0],
    );
    tracker.onEvent(ev("destroy"));
    await docker.answer({ kind: "gone" });
    assert.equal(await counter("vanished"), 1, "unchanged");
  });

  it("events queued behind a removal keep their meaning (destroy after kill and die)", async () => {
    const { docker, tracker, ev, counter } = setup();
    tracker.onEvent(ev("start"));
    await docker.answer(running("1111"));
    tracker.onEvent(ev("kill"));
    tracker.onEvent(ev("die"));
    tracker.onEvent(ev("destroy"));
    await docker.answer({ kind: "gone" });
    await docker.answer({ kind: "gone" });
    assert.equal(await counter("vanished"), 0);
  });

  it("hands every look to the observer with the facts of the events before the look began", async () => {
    const docker = new ScriptedDocker();
    const looks: { state: string | undefined; died: boolean; sigkilled: boolean }[] = [];
    const tracker = new ContainerTracker(
      {
        inspect: docker.inspect,
        listRunning: async () => [],
        publish: () => undefined,
        isConnected: () => true,
        observed: (_id, _obs, view, facts) =>
          looks.push({ state: view?.state, died: facts.died ?? false, sigkilled: facts.sigkilled ?? false }),
      },
      opts,
      log,
      new RegistratorMetrics(new Registry()),
    );
    const ev = (action: ContainerEvent["action"], signal?: string): ContainerEvent => ({
      id: ID,
      action,
      ...(signal ? { signal } : {}),
    });
    tracker.onEvent(ev("start"));
    await docker.answer(running("1111"));
    tracker.onEvent(ev("die"));
    // A restart policy's start arrives while the look for the die is under way: that look
    // still answers for the die; the start gets a look of its own.
    tracker.onEvent(ev("start"));
    await docker.answer(stopped());
    await docker.answer(running("2222"));
    tracker.onEvent(ev("kill", "9"));
    await docker.answer(stopped());
    assert.deepEqual(looks, [
      { state: "registered", died: false, sigkilled: false },
      { state: "none", died: true, sigkilled: false },
      { state: "registered", died: false, sigkilled: false },
      { state: "none", died: false, sigkilled: true },
    ]);
  });

  it("a full sync looks at listed containers and at known ones no longer listed", async () => {
    const { docker, published, tracker, ev } = setup();
    tracker.onEvent(ev("start"));
    await docker.answer(running("1111"));
    docker.listed = [];
    const sync = tracker.syncAll();
    await docker.answer({ kind: "gone" });
    await sync;
    assert.deepEqual(
      published.map((p) => p.services.length),
      [1, 0],
    );
    assert.deepEqual(tracker.snapshot(), []);
  });
});
