import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RouteSpec } from "../../router/options.js";
import { diffRoutes, routesFromTable } from "../../router/route-table.js";
import type { KV, PrefixSnapshot } from "../../shared/watch.js";
import { deepFreeze } from "../harness/deep-freeze.js";

const spec = (
  scope: string,
  port: number,
  source: "flag" | "table" = "table",
  replica?: number,
): RouteSpec => ({
  scope,
  listen: { host: "0.0.0.0", port },
  replicaListen: replica === undefined ? null : { host: "0.0.0.0", port: replica },
  source,
});
const map = (...specs: RouteSpec[]) => new Map(specs.map((s) => [s.scope, s]));

function snap(entries: Record<string, string>): PrefixSnapshot {
  const kvs = new Map<string, KV>();
  for (const [k, v] of Object.entries(entries)) {
    const key = `/routing/allocation/${k}`;
    kvs.set(key, { key, value: v, modRevision: 1, createRevision: 1, lease: "0" });
  }
  return { revision: 1, kvs };
}

describe("routesFromTable", () => {
  it("reads PORT and PORT,REPLICA_PORT; lists what it cannot use", () => {
    const t = routesFromTable(snap({ a: "6001", b: "6002,6003", c: "x", "d/e": "6004" }), "0.0.0.0");
    assert.deepEqual([...t.routes.keys()], ["a", "b"]);
    assert.equal(t.routes.get("b")?.replicaListen?.port, 6003);
    assert.deepEqual([...t.invalid].sort(), ["/routing/allocation/c", "/routing/allocation/d/e"]);
  });
});

describe("diffRoutes", () => {
  const cases: {
    name: string;
    current: Map<string, RouteSpec>;
    desired: Map<string, RouteSpec>;
    open: string[];
    close: string[];
  }[] = [
    { name: "a new table entry opens", current: map(), desired: map(spec("a", 1)), open: ["a"], close: [] },
    { name: "a removed entry closes", current: map(spec("a", 1)), desired: map(), open: [], close: ["a"] },
    {
      name: "unchanged is left alone",
      current: map(spec("a", 1)),
      desired: map(spec("a", 1)),
      open: [],
      close: [],
    },
    {
      name: "a moved port closes and reopens",
      current: map(spec("a", 1)),
      desired: map(spec("a", 2)),
      open: ["a"],
      close: ["a"],
    },
    {
      name: "a new replica port closes and reopens",
      current: map(spec("a", 1)),
      desired: map(spec("a", 1, "table", 3)),
      open: ["a"],
      close: ["a"],
    },
    {
      name: "routes from flags are never touched by the table",
      current: map(spec("a", 1, "flag")),
      desired: map(spec("a", 2)),
      open: [],
      close: [],
    },
    {
      name: "flag routes stay when the table is empty",
      current: map(spec("a", 1, "flag"), spec("b", 2)),
      desired: map(),
      open: [],
      close: ["b"],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = diffRoutes(deepFreeze(c.current), deepFreeze(c.desired));
      assert.deepEqual(
        d.open.map((s) => s.scope),
        c.open,
      );
      assert.deepEqual([...d.close], c.close);
    });
  }
});
