import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { AddressSource } from "../../agent/config.js";
import {
  DiscoveryError,
  discoverAddresses,
  discoveryKeys,
  parseRegistryValue,
  registryInstanceId,
} from "../../agent/discovery.js";
import { createLogger } from "../../shared/logger.js";

type Registry = Extract<AddressSource, { kind: "registry" }>;
const src = (o: Partial<Registry> = {}): Registry => ({
  kind: "registry",
  dockerHostname: "192.168.99.100",
  containerName: "john",
  prefix: "",
  service5432: "postgresql-patroni",
  service8008: "postgresql-patroni-api",
  timeoutSeconds: 120,
  ...o,
});

const silent = createLogger({ name: "test", level: "silent" });

describe("discovery key names (the registrator's /<prefix>/<service>/<hostname>:<container>:<port>)", () => {
  const table: [string, Registry, { postgres: string; api: string }][] = [
    [
      "the original tutorial's key, no prefix",
      src(),
      {
        postgres: "/postgresql-patroni/192.168.99.100:john:5432",
        api: "/postgresql-patroni-api/192.168.99.100:john:8008",
      },
    ],
    [
      "a registry prefix, slashes normalised",
      src({ prefix: "services/" }),
      {
        postgres: "/services/postgresql-patroni/192.168.99.100:john:5432",
        api: "/services/postgresql-patroni-api/192.168.99.100:john:8008",
      },
    ],
    [
      "a nested prefix and custom service names",
      src({ prefix: "/a/b", service5432: "pg", service8008: "patroni" }),
      { postgres: "/a/b/pg/192.168.99.100:john:5432", api: "/a/b/patroni/192.168.99.100:john:8008" },
    ],
    [
      "a compose container name and a host name",
      src({ dockerHostname: "docker-1", containerName: "stack-pg1" }),
      {
        postgres: "/postgresql-patroni/docker-1:stack-pg1:5432",
        api: "/postgresql-patroni-api/docker-1:stack-pg1:8008",
      },
    ],
  ];
  for (const [name, input, want] of table) {
    it(name, () => assert.deepEqual(discoveryKeys(input), want));
  }

  it("drops Docker's leading slash from a container name", () => {
    assert.equal(registryInstanceId("h", "/john", 5432), "h:john:5432");
  });
});

describe("registry values", () => {
  const table: [string, { host: string; port: number } | null][] = [
    ["192.168.99.100:40000", { host: "192.168.99.100", port: 40000 }],
    ["172.18.0.4:5432", { host: "172.18.0.4", port: 5432 }],
    ["[fd00::4]:5432", { host: "fd00::4", port: 5432 }],
    ["192.168.99.100", null],
    ["192.168.99.100:0", null],
    ["fd00::4:5432", null],
    ["", null],
    ['{"ip":"1.2.3.4"}', null],
  ];
  for (const [value, want] of table) {
    it(`${JSON.stringify(value)} → ${want ? `${want.host} port ${want.port}` : "not an address"}`, () =>
      assert.deepEqual(parseRegistryValue(value), want));
  }
});

describe("waiting for the registrator's keys", () => {
  const keys = discoveryKeys(src());

  it("returns both addresses once both keys hold ip:port", async () => {
    let calls = 0;
    const store = new Map<string, string>();
    const read = async (k: string) => {
      calls++;
      if (calls === 4) store.set(keys.postgres, "192.168.99.100:40000");
      if (calls === 6) store.set(keys.api, "192.168.99.100:40001");
      return store.get(k) ?? null;
    };
    const got = await discoverAddresses(read, keys, silent, { timeoutMs: 10_000, pollMs: 5 });
    assert.deepEqual(got, {
      postgres: { host: "192.168.99.100", port: 40000 },
      api: { host: "192.168.99.100", port: 40001 },
    });
  });

  it("keeps waiting through etcd errors and values that are not addresses", async () => {
    let calls = 0;
    const read = async (k: string) => {
      calls++;
      if (calls <= 2) throw new Error("14 UNAVAILABLE: connect ECONNREFUSED");
      if (calls <= 6) return "garbage";
      return k === keys.postgres ? "10.0.0.1:5432" : "10.0.0.1:8008";
    };
    const got = await discoverAddresses(read, keys, silent, { timeoutMs: 10_000, pollMs: 5 });
    assert.equal(got.postgres.host, "10.0.0.1");
  });

  it("times out with a line naming the exact keys it waited for", async () => {
    const read = async (k: string) => (k === keys.postgres ? "192.168.99.100:40000" : null);
    await assert.rejects(
      discoverAddresses(read, keys, silent, { timeoutMs: 60, pollMs: 10 }),
      (err: unknown) => {
        assert.ok(err instanceof DiscoveryError);
        assert.ok(err.message.includes("/postgresql-patroni/192.168.99.100:john:5432"), err.message);
        assert.ok(err.message.includes("/postgresql-patroni-api/192.168.99.100:john:8008"), err.message);
        assert.match(err.message, /missing: \/postgresql-patroni-api\/192\.168\.99\.100:john:8008/);
        assert.match(err.message, /-hostname 192\.168\.99\.100/);
        assert.ok(!err.message.includes("\n"));
        return true;
      },
    );
  });
});
