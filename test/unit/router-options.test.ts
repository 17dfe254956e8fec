import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  parseBytes,
  type RouterConfig,
  routeFromTable,
  routerSpec,
  staticRoutes,
} from "../../router/options.js";
import { parseArgs } from "../../shared/config.js";
import { ConfigError } from "../../shared/errors.js";

function parse(argv: string[], env: Record<string, string> = {}): RouterConfig {
  const r = parseArgs(routerSpec, argv, env);
  assert.equal(r.kind, "config");
  return r.config;
}

function parseError(argv: string[], env: Record<string, string> = {}): string {
  try {
    const c = parse(argv, env);
    staticRoutes(c);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(!err.message.includes("\n"), "one line");
    return err.message;
  }
  assert.fail("expected a ConfigError");
}

describe("router options", () => {
  it("has the contract's defaults", () => {
    const c = parse(["--scope", "demo"]);
    assert.deepEqual(c.etcd, [{ host: "127.0.0.1", port: 2379 }]);
    assert.equal(c.namespace, "/service/");
    assert.deepEqual(c.listen, { host: "0.0.0.0", port: 5432 });
    assert.deepEqual(c.replicaListen, { host: "0.0.0.0", port: 5433 });
    assert.deepEqual(c.adminListen, { host: "0.0.0.0", port: 8080 });
    assert.equal(c.check, "both");
    assert.equal(c.closeOnDemote, true);
    assert.equal(c.holdTimeout, 30);
    assert.equal(c.maxLag, 16 * 1024 * 1024);
    assert.equal(c.replicaFallback, "primary");
    assert.ok(c.restTimeout <= 1);
    assert.equal(c.restInterval, 1);
  });

  it("takes every flag from the environment under the ROUTER_ name", () => {
    const c = parse([], {
      ROUTER_SCOPE: "pgdemo",
      ROUTER_ETCD: "etcd1:2379,etcd2",
      ROUTER_REPLICA_LISTEN: "off",
      ROUTER_CHECK: "rest",
      ROUTER_CLOSE_ON_DEMOTE: "false",
      ROUTER_MAX_LAG: "1MiB",
      ROUTER_ROUTE: "a=127.0.0.1:6001;b=127.0.0.1:6003,127.0.0.1:6004",
    });
    assert.equal(c.scope, "pgdemo");
    assert.deepEqual(c.etcd, [
      { host: "etcd1", port: 2379 },
      { host: "etcd2", port: 2379 },
    ]);
    assert.equal(c.replicaListen, null);
    assert.equal(c.check, "rest");
    assert.equal(c.closeOnDemote, false);
    assert.equal(c.maxLag, 1024 * 1024);
    assert.deepEqual(
      staticRoutes(c).map((r) => [r.scope, r.listen.port, r.replicaListen?.port ?? null]),
      [
        ["pgdemo", 5432, null],
        ["a", 6001, null],
        ["b", 6003, 6004],
      ],
    );
  });

  it("flags win over the environment", () => {
    assert.equal(parse(["--scope", "x"], { ROUTER_SCOPE: "y" }).scope, "x");
  });

  for (const [argv, mustName] of [
    [["--scope", "demo", "--check", "sometimes"], /"sometimes" for -check: expected one of both, etcd, rest/],
    [["--scope", "demo", "--max-lag", "lots"], /"lots" for -max-lag/],
    [["--scope", "demo", "--rest-timeout", "5s"], /"5s" for -rest-timeout.*to 1s/],
    [["--scope", "demo", "--replica-fallback", "maybe"], /-replica-fallback/],
    [["--route", "nohost"], /"nohost" for -route.*SCOPE=HOST:PORT/],
    [["--route", "a b=127.0.0.1:1"], /-route/],
    [["--route", "a=127.0.0.1:99999"], /-route/],
    [["--scope", "bad/scope"], /-scope/],
    [[], /nothing to route/],
    [["--route", "a=127.0.0.1:6001", "--route", "a=127.0.0.1:6002"], /routed twice/],
    [["--route", "a=127.0.0.1:6001", "--route", "b=127.0.0.1:6001"], /port 6001.*used twice/],
  ] as const) {
    it(`rejects ${JSON.stringify(argv)} with one line`, () => {
      assert.match(parseError([...argv]), mustName);
    });
  }

  it("--route-table alone is enough", () => {
    const c = parse(["--route-table"]);
    assert.deepEqual(staticRoutes(c), []);
  });
});

describe("parseBytes", () => {
  for (const [raw, n] of [
    ["0", 0],
    ["1048576", 1048576],
    ["16MiB", 16 * 1024 * 1024],
    ["16MB", 16 * 1024 * 1024],
    ["512kB", 512 * 1024],
    ["1g", 1024 ** 3],
  ] as const) {
    it(`${raw} = ${n}`, () => assert.equal(parseBytes(raw), n));
  }
  for (const raw of ["", "-1", "12 parsecs", "MiB"]) {
    it(`rejects ${JSON.stringify(raw)}`, () => assert.throws(() => parseBytes(raw)));
  }
});

describe("routeFromTable: /routing/allocation/<scope> values", () => {
  it("PORT gives a primary listener on the host", () => {
    const r = routeFromTable("demo", "6001", "0.0.0.0");
    assert.deepEqual(r, {
      scope: "demo",
      listen: { host: "0.0.0.0", port: 6001 },
      replicaListen: null,
      source: "table",
    });
  });
  it("PORT,REPLICA_PORT gives both", () => {
    assert.equal(routeFromTable("demo", " 6001,6002 ", "::")?.replicaListen?.port, 6002);
  });
  for (const v of ["", "x", "0", "70000", "6001,6001", "6001,", "1,2,3"]) {
    it(`ignores ${JSON.stringify(v)}`, () => assert.equal(routeFromTable("demo", v, "0.0.0.0"), null));
  }
  it("ignores a bad scope", () => assert.equal(routeFromTable("a/b", "6001", "0.0.0.0"), null));
});
