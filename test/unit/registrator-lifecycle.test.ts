/**
 * Container lifecycle decisions (pure): what a container should have registered
 * given Docker's view of it, the events seen, -deregister and -require-healthy.
 * Inputs are real inspect documents captured from this machine's engine.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type ContainerFacts,
  type ContainerView,
  decideContainer,
  diedBySignal,
  type LifecycleOptions,
  NO_FACTS,
  type Observation,
} from "../../registrator/lifecycle.js";
import { deepFreeze, type Loose, mutableFixture } from "../harness/fixtures.js";

const opts: LifecycleOptions = Object.freeze({
  hostname: "host1",
  prefix: "/svc",
  internal: false,
  explicit: false,
  tags: [],
  deregister: "always",
  requireHealthy: false,
});

function found(fixture: string, patch?: (c: Loose) => void): Observation {
  const c = mutableFixture(`registrator/${fixture}.json`);
  patch?.(c);
  return deepFreeze({ kind: "found", inspect: c });
}

function registeredFrom(fixture: string): ContainerView {
  const v = decideContainer("id1", undefined, found(fixture), NO_FACTS, opts);
  assert.ok(v && v.state === "registered");
  return v;
}

const exitedWith = (code: number) => (c: Loose) => {
  c["State"]["ExitCode"] = code;
};

interface Row {
  title: string;
  obs: () => Observation;
  prev?: () => ContainerView;
  facts?: ContainerFacts;
  options?: Partial<LifecycleOptions>;
  state: ContainerView["state"] | null;
  services: number;
  reason?: RegExp;
}

const rows: Row[] = [
  {
    title: "running: its services",
    obs: () => found("several"),
    state: "registered",
    services: 2,
    reason: /running/,
  },
  {
    title: "running with nothing to register",
    obs: () => found("ignore"),
    state: "none",
    services: 0,
    reason: /nothing to register/,
  },
  {
    title: "paused: nothing",
    obs: () => found("paused"),
    prev: () => registeredFrom("single"),
    state: "none",
    services: 0,
    reason: /paused/,
  },
  {
    title: "exited non-zero, -deregister always: nothing",
    obs: () => found("exited"),
    prev: () => registeredFrom("single"),
    state: "none",
    services: 0,
    reason: /exit code 3/,
  },
  {
    title: "exited non-zero, -deregister on-success: kept",
    obs: () => found("exited"),
    prev: () => registeredFrom("single"),
    options: { deregister: "on-success" },
    state: "retained",
    services: 1,
    reason: /kept registered/,
  },
  {
    title: "exited 0, on-success: deregistered",
    obs: () => found("exited", exitedWith(0)),
    prev: () => registeredFrom("single"),
    options: { deregister: "on-success" },
    state: "none",
    services: 0,
  },
  {
    title: "killed by a signal (137), on-success: deregistered",
    obs: () => found("exited", exitedWith(137)),
    prev: () => registeredFrom("single"),
    options: { deregister: "on-success" },
    state: "none",
    services: 0,
  },
  {
    title: "exited non-zero after a stop request, on-success: deregistered",
    obs: () => found("exited"),
    prev: () => registeredFrom("single"),
    facts: { stopRequested: true },
    options: { deregister: "on-success" },
    state: "none",
    services: 0,
  },
  {
    title: "exited non-zero, on-success, never registered: nothing to keep",
    obs: () => found("exited"),
    options: { deregister: "on-success" },
    state: "none",
    services: 0,
  },
  {
    title: "restarting after a crash, on-success: kept",
    obs: () =>
      found("exited", (c) => {
        c["State"]["Restarting"] = true;
        c["State"]["Running"] = true;
        c["State"]["ExitCode"] = 1;
      }),
    prev: () => registeredFrom("single"),
    options: { deregister: "on-success" },
    state: "retained",
    services: 1,
    reason: /restarting/,
  },
  {
    title: "healthy with -require-healthy: registered",
    obs: () => found("healthy"),
    options: { requireHealthy: true },
    state: "registered",
    services: 1,
  },
  {
    title: "health starting with -require-healthy: not yet",
    obs: () => found("starting"),
    options: { requireHealthy: true },
    state: "none",
    services: 0,
    reason: /health is starting/,
  },
  {
    title: "unhealthy with -require-healthy: deregistered",
    obs: () => found("healthy", (c) => (c["State"]["Health"]["Status"] = "unhealthy")),
    prev: () => registeredFrom("healthy"),
    options: { requireHealthy: true },
    state: "none",
    services: 0,
    reason: /unhealthy/,
  },
  {
    title: "health starting without -require-healthy: registered",
    obs: () => found("starting"),
    state: "registered",
    services: 1,
  },
  {
    title: "no HEALTHCHECK with -require-healthy: registered",
    obs: () => found("single"),
    options: { requireHealthy: true },
    state: "registered",
    services: 1,
  },
  {
    title: "gone: forgotten",
    obs: () => ({ kind: "gone" }),
    prev: () => registeredFrom("single"),
    state: null,
    services: 0,
  },
  {
    title: "a document without State: not running, nothing",
    obs: () => found("single", (c) => delete c["State"]),
    state: "none",
    services: 0,
  },
];

describe("decideContainer", () => {
  for (const r of rows) {
    it(r.title, () => {
      const prev = r.prev ? deepFreeze(r.prev()) : undefined;
      const v = decideContainer("id1", prev, r.obs(), r.facts ?? NO_FACTS, { ...opts, ...r.options });
      assert.equal(v?.state ?? null, r.state);
      assert.equal(v?.services.length ?? 0, r.services);
      if (r.reason) assert.match(v!.reason, r.reason);
      if (v?.state === "retained") assert.deepEqual(v.services, prev!.services, "keeps exactly what it had");
    });
  }

  it("names the container without its leading slash", () => {
    const v = decideContainer("id1", undefined, found("single"), NO_FACTS, opts);
    assert.equal(v?.name, "pgha-fixture-18927-single");
  });
});

describe("diedBySignal", () => {
  const table: [number, boolean][] = [
    [0, false],
    [1, false],
    [128, false],
    [129, true],
    [137, true],
    [143, true],
    [192, true],
    [193, false],
    [255, false],
  ];
  for (const [code, want] of table) it(`${code} → ${want}`, () => assert.equal(diedBySignal(code), want));
});
