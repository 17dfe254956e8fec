import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type AgentConfig, parseAgentConfig } from "../../agent/config.js";
import { ConfigError } from "../../shared/errors.js";

const BASE: Record<string, string> = {
  NAME: "john",
  PATRONI_SCOPE: "demo",
  ETCD_HOST_PORT: "192.168.99.100:2379",
  DOCKER_HOSTNAME: "192.168.99.100",
  POSTGRES_USERNAME: "admin",
  POSTGRES_PASSWORD: "admin-pw",
  REPLICATION_PASSWORD: "repl-pw",
  SUPERUSER_PASSWORD: "super-pw",
  RESTAPI_PASSWORD: "rest-pw",
  PG_MAJOR: "17",
};

function config(env: Record<string, string | undefined>, files: Record<string, string> = {}): AgentConfig {
  const r = parseAgentConfig([], env, (p) => {
    const text = files[p];
    if (text === undefined) throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
    return text;
  });
  assert.equal(r.kind, "config");
  if (r.kind !== "config") throw new Error("unreachable");
  return r.config;
}

function without(...names: string[]): Record<string, string> {
  const env = { ...BASE };
  for (const n of names) delete env[n];
  return env;
}

describe("agent configuration from the environment", () => {
  const accepted: [string, Record<string, string | undefined>, (c: AgentConfig) => void][] = [
    [
      "the original's variables: registry discovery with the container named NAME",
      BASE,
      (c) => {
        assert.equal(c.name, "john");
        assert.equal(c.scope, "demo");
        assert.deepEqual(c.etcd.hosts, [{ host: "192.168.99.100", port: 2379 }]);
        assert.deepEqual(c.addresses, {
          kind: "registry",
          dockerHostname: "192.168.99.100",
          containerName: "john",
          prefix: "",
          service5432: "postgresql-patroni",
          service8008: "postgresql-patroni-api",
          timeoutSeconds: 120,
        });
        assert.deepEqual(c.admin, { username: "admin", password: "admin-pw" });
        assert.deepEqual(c.replication, { username: "replicator", password: "repl-pw" });
        assert.deepEqual(c.superuser, { username: "postgres", password: "super-pw" });
        assert.deepEqual(c.restapi, { username: "patroni", password: "rest-pw" });
        assert.deepEqual(c.dcs, {
          ttl: 30,
          loopWait: 10,
          retryTimeout: 10,
          synchronousMode: "on",
          synchronousModeStrict: false,
          failsafeMode: true,
        });
        assert.deepEqual(c.stop, { switchover: true, timeoutSeconds: 20, gracePeriodSeconds: 60 });
        assert.equal(c.namespace, "/service/");
      },
    ],
    [
      "ETCD_HOSTS wins over ETCD_HOST_PORT; a host without port gets 2379",
      { ...BASE, ETCD_HOSTS: "etcd1:2379, etcd2,[fd00::3]:2389" },
      (c) =>
        assert.deepEqual(c.etcd.hosts, [
          { host: "etcd1", port: 2379 },
          { host: "etcd2", port: 2379 },
          { host: "fd00::3", port: 2389 },
        ]),
    ],
    [
      "DOCKER_HOST_IP with ports: static addresses, no DOCKER_HOSTNAME needed",
      {
        ...without("DOCKER_HOSTNAME"),
        DOCKER_HOST_IP: "10.0.0.5",
        DOCKER_HOST_PORT_5432: "40000",
        DOCKER_HOST_PORT_8008: "40001",
      },
      (c) =>
        assert.deepEqual(c.addresses, {
          kind: "static",
          postgres: { host: "10.0.0.5", port: 40000 },
          api: { host: "10.0.0.5", port: 40001 },
        }),
    ],
    [
      "DOCKER_HOST_IP alone: the container ports",
      { ...BASE, DOCKER_HOST_IP: "10.0.0.5" },
      (c) =>
        assert.deepEqual(c.addresses, {
          kind: "static",
          postgres: { host: "10.0.0.5", port: 5432 },
          api: { host: "10.0.0.5", port: 8008 },
        }),
    ],
    [
      "CONTAINER_NAME, REGISTRY_PREFIX and service names shape the lookup",
      {
        ...BASE,
        CONTAINER_NAME: "stack-pg1",
        REGISTRY_PREFIX: "/services",
        REGISTRY_SERVICE_5432: "pg",
        REGISTRY_SERVICE_8008: "pgapi",
        DISCOVERY_TIMEOUT: "2m",
      },
      (c) => {
        assert.equal(c.addresses.kind, "registry");
        if (c.addresses.kind !== "registry") return;
        assert.equal(c.addresses.containerName, "stack-pg1");
        assert.equal(c.addresses.prefix, "/services");
        assert.equal(c.addresses.service5432, "pg");
        assert.equal(c.addresses.service8008, "pgapi");
        assert.equal(c.addresses.timeoutSeconds, 120);
      },
    ],
    [
      "DCS timings, synchronous mode and the stop behaviour",
      {
        ...BASE,
        PATRONI_TTL: "20",
        PATRONI_LOOP_WAIT: "2",
        PATRONI_RETRY_TIMEOUT: "4",
        PATRONI_SYNCHRONOUS_MODE: "false",
        SWITCHOVER_ON_STOP: "false",
        SWITCHOVER_TIMEOUT: "45s",
        STOP_GRACE_PERIOD: "90",
      },
      (c) => {
        assert.deepEqual(c.dcs, {
          ttl: 20,
          loopWait: 2,
          retryTimeout: 4,
          synchronousMode: "off",
          synchronousModeStrict: false,
          failsafeMode: true,
        });
        assert.deepEqual(c.stop, { switchover: false, timeoutSeconds: 45, gracePeriodSeconds: 90 });
      },
    ],
    [
      "custom role names",
      { ...BASE, REPLICATION_USERNAME: "standby", SUPERUSER_USERNAME: "dba", RESTAPI_USERNAME: "ops" },
      (c) => {
        assert.equal(c.replication.username, "standby");
        assert.equal(c.superuser.username, "dba");
        assert.equal(c.restapi.username, "ops");
      },
    ],
    [
      "etcd credentials and TLS (ETCD_USER, as in the other services)",
      {
        ...BASE,
        ETCD_USER: "root",
        ETCD_PASSWORD: "x",
        ETCD_CA: "/ca.pem",
        ETCD_CERT: "/c.pem",
        ETCD_KEY: "/k.pem",
      },
      (c) =>
        assert.deepEqual(
          { ...c.etcd, hosts: undefined },
          {
            hosts: undefined,
            username: "root",
            password: "x",
            caFile: "/ca.pem",
            certFile: "/c.pem",
            keyFile: "/k.pem",
          },
        ),
    ],
    [
      "the agent's first spelling of the etcd user, ETCD_USERNAME",
      { ...BASE, ETCD_USERNAME: "root" },
      (c) => assert.equal(c.etcd.username, "root"),
    ],
  ];
  for (const [name, env, check] of accepted) it(`accepts ${name}`, () => check(config(env)));

  it("takes the etcd user as -etcd-user and as its first spelling -etcd-username", () => {
    for (const flag of ["-etcd-user", "--etcd-username"]) {
      const r = parseAgentConfig([flag, "root"], BASE);
      assert.equal(r.kind === "config" ? r.config.etcd.username : null, "root", flag);
    }
  });

  const rejected: [string, Record<string, string | undefined>, RegExp][] = [
    ["no NAME", without("NAME"), /^agent: missing required -name or NAME/],
    ["a NAME with a slash", { ...BASE, NAME: "a/b" }, /invalid value "a\/b" for -name \(from NAME\)/],
    ["no PATRONI_SCOPE", without("PATRONI_SCOPE"), /missing required -scope or PATRONI_SCOPE/],
    ["no etcd at all", without("ETCD_HOST_PORT"), /missing ETCD_HOST_PORT or ETCD_HOSTS/],
    [
      "a bad etcd port",
      { ...BASE, ETCD_HOST_PORT: "etcd:99999" },
      /for -etcd-host-port \(from ETCD_HOST_PORT\)/,
    ],
    ["no DOCKER_HOSTNAME and no DOCKER_HOST_IP", without("DOCKER_HOSTNAME"), /missing DOCKER_HOSTNAME/],
    [
      "a REPLICATION_PASSWORD with a line break",
      { ...BASE, REPLICATION_PASSWORD: "first\nsecond" },
      /^agent: REPLICATION_PASSWORD holds a line break, which PostgreSQL's password file .* expected a password without line breaks$/,
    ],
    [
      "a SUPERUSER_PASSWORD with a carriage return",
      { ...BASE, SUPERUSER_PASSWORD: "a\rb" },
      /^agent: SUPERUSER_PASSWORD holds a line break/,
    ],
    [
      "ports without DOCKER_HOST_IP",
      { ...BASE, DOCKER_HOST_PORT_5432: "40000" },
      /DOCKER_HOST_PORT_5432\/_8008 need DOCKER_HOST_IP/,
    ],
    [
      "a port that is no port",
      { ...BASE, DOCKER_HOST_IP: "1.2.3.4", DOCKER_HOST_PORT_8008: "http" },
      /DOCKER_HOST_PORT_8008/,
    ],
    [
      "no POSTGRES_USERNAME",
      without("POSTGRES_USERNAME"),
      /missing required -postgres-username or POSTGRES_USERNAME/,
    ],
    ["a role name with a quote", { ...BASE, POSTGRES_USERNAME: "ad'min" }, /POSTGRES_USERNAME/],
    [
      "no POSTGRES_PASSWORD",
      without("POSTGRES_PASSWORD"),
      /missing required -postgres-password or POSTGRES_PASSWORD/,
    ],
    ["no REPLICATION_PASSWORD", without("REPLICATION_PASSWORD"), /REPLICATION_PASSWORD/],
    ["no SUPERUSER_PASSWORD", without("SUPERUSER_PASSWORD"), /SUPERUSER_PASSWORD/],
    ["no RESTAPI_PASSWORD", without("RESTAPI_PASSWORD"), /RESTAPI_PASSWORD/],
    [
      "the admin named like the superuser",
      { ...BASE, POSTGRES_USERNAME: "postgres" },
      /POSTGRES_USERNAME and SUPERUSER_USERNAME are both "postgres"/,
    ],
    [
      "a TTL shorter than loop_wait + 2 x retry_timeout",
      { ...BASE, PATRONI_TTL: "20", PATRONI_LOOP_WAIT: "12", PATRONI_RETRY_TIMEOUT: "5" },
      /PATRONI_TTL 20 is too short/,
    ],
    [
      "a TTL under Patroni 4's minimum (it would use 20 and say so only in its log)",
      { ...BASE, PATRONI_TTL: "10", PATRONI_LOOP_WAIT: "2", PATRONI_RETRY_TIMEOUT: "4" },
      /invalid value "10" for -ttl \(from PATRONI_TTL\): expected an integer from 20 to 3600/,
    ],
    [
      "a retry_timeout under Patroni 4's minimum",
      { ...BASE, PATRONI_RETRY_TIMEOUT: "2" },
      /for -retry-timeout \(from PATRONI_RETRY_TIMEOUT\): expected an integer from 3 to 3600/,
    ],
    ["no PG_MAJOR (the image sets it)", without("PG_MAJOR"), /missing required -pg-major or PG_MAJOR/],
    ["a PG_MAJOR that is no major version", { ...BASE, PG_MAJOR: "17.2" }, /-pg-major \(from PG_MAJOR\)/],
    [
      "an etcd client certificate without its key",
      { ...BASE, ETCD_CERT: "/c.pem" },
      /-etcd-cert and -etcd-key/,
    ],
    ["a TTL that is not a number", { ...BASE, PATRONI_TTL: "ten" }, /for -ttl \(from PATRONI_TTL\)/],
    [
      "a sync mode that is neither a boolean nor quorum",
      { ...BASE, PATRONI_SYNCHRONOUS_MODE: "sometimes" },
      /PATRONI_SYNCHRONOUS_MODE/,
    ],
    ["a relative namespace", { ...BASE, PATRONI_NAMESPACE: "service" }, /PATRONI_NAMESPACE/],
    [
      "a WAL segment size that is not a power of 2",
      { ...BASE, WAL_SEGMENT_SIZE: "12" },
      /invalid WAL_SEGMENT_SIZE 12: expected a power of 2 from 1 to 1024 \(MB\)/,
    ],
    ["a WAL segment size over 1 GB", { ...BASE, WAL_SEGMENT_SIZE: "2048" }, /WAL_SEGMENT_SIZE/],
    [
      "a secret file that is missing",
      { ...without("POSTGRES_PASSWORD"), POSTGRES_PASSWORD_FILE: "/nope" },
      /cannot read POSTGRES_PASSWORD_FILE "\/nope" \(ENOENT\)/,
    ],
  ];
  for (const [name, env, pattern] of rejected) {
    it(`rejects ${name} with one line`, () => {
      assert.throws(
        () =>
          parseAgentConfig([], env, () => {
            throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
          }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.match(err.message, pattern);
          assert.ok(!err.message.includes("\n"), "one line");
          for (const pw of ["admin-pw", "repl-pw", "super-pw", "rest-pw"])
            assert.ok(!err.message.includes(pw));
          return true;
        },
      );
    });
  }

  it("reads passwords from <NAME>_FILE, dropping the trailing newline; the value itself wins", () => {
    const c = config(
      {
        ...without("POSTGRES_PASSWORD", "REPLICATION_PASSWORD"),
        POSTGRES_PASSWORD_FILE: "/run/secrets/pg",
        REPLICATION_PASSWORD_FILE: "/run/secrets/repl",
        SUPERUSER_PASSWORD_FILE: "/run/secrets/ignored",
      },
      { "/run/secrets/pg": "line1\nline2\n", "/run/secrets/repl": "from-file\n" },
    );
    assert.equal(c.admin.password, "line1\nline2", "only the last newline is dropped");
    assert.equal(c.replication.password, "from-file");
    assert.equal(c.superuser.password, "super-pw");
  });

  it("flags win over the environment", () => {
    const r = parseAgentConfig(["-name", "paul", "--ttl=40"], BASE);
    assert.equal(r.kind, "config");
    if (r.kind === "config") {
      assert.equal(r.config.name, "paul");
      assert.equal(r.config.dcs.ttl, 40);
    }
  });

  it("returns a frozen configuration", () => {
    const c = config(BASE);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.addresses) && Object.isFrozen(c.dcs));
  });
});
