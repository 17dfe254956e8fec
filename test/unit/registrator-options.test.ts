/**
 * The registrator's command line: gliderlabs flags, the registry URI, env vars,
 * and one clear line with exit code 2 for bad input (checked on the built CLI).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  engineHostname,
  parseOptions,
  parseRegistryUri,
  type RegistratorOptions,
} from "../../registrator/options.js";
import { ConfigError } from "../../shared/errors.js";
import { freePort } from "../harness/ports.js";

const MAIN = fileURLToPath(new URL("../../registrator/main.js", import.meta.url));

function parse(argv: string[], env: Record<string, string> = {}): RegistratorOptions {
  const r = parseOptions(argv, env, "os-host");
  assert.equal(r.kind, "options");
  if (r.kind !== "options") throw new Error("unreachable");
  return r.options;
}

describe("registrator options", () => {
  it("defaults", () => {
    const o = parse(["etcd://127.0.0.1:2379"]);
    assert.equal(o.hostnameGiven, false, "main.ts asks Docker for the engine's name");
    assert.equal(o.ttl, 30);
    assert.equal(o.resync, 60);
    assert.equal(o.deregister, "always");
    assert.equal(o.retryAttempts, -1);
    assert.equal(o.retryInterval, 2000);
    assert.equal(o.internal, false);
    assert.equal(o.cleanup, false);
    assert.deepEqual(o.tags, []);
    assert.deepEqual(o.dockerHost, {
      kind: "unix",
      socketPath: "/var/run/docker.sock",
      url: "unix:///var/run/docker.sock",
    });
    assert.deepEqual(o.metricsAddr, { host: "0.0.0.0", port: 8080 });
    assert.deepEqual(o.registry, { hosts: [{ host: "127.0.0.1", port: 2379 }], prefix: "" });
    assert.equal(o.releaseDeadLeaders, false, "releasing a dead leader's lock is opt-in");
    assert.equal(o.patroniNamespace, "/service/");
  });

  it("-release-dead-leaders and -patroni-namespace (normalised as Patroni does), or their env vars", () => {
    const o = parse(["-release-dead-leaders", "-patroni-namespace", "/db", "etcd://h"]);
    assert.equal(o.releaseDeadLeaders, true);
    assert.equal(o.patroniNamespace, "/db/");
    const e = parse([], {
      REGISTRATOR_URI: "etcd://h",
      REGISTRATOR_RELEASE_DEAD_LEADERS: "true",
      REGISTRATOR_PATRONI_NAMESPACE: "/service/",
    });
    assert.equal(e.releaseDeadLeaders, true);
    assert.equal(e.patroniNamespace, "/service/");
  });

  it("gliderlabs-style single-dash flags, before the URI", () => {
    const o = parse([
      "-ip",
      "192.0.2.10",
      "-hostname",
      "node1",
      "-internal",
      "-explicit",
      "-tags",
      "a,b\\,c",
      "-ttl",
      "10",
      "-ttl-refresh",
      "5",
      "-resync",
      "0",
      "-deregister",
      "on-success",
      "-cleanup",
      "-retry-attempts",
      "3",
      "-retry-interval",
      "500",
      "-useIpFromLabel",
      "com.example.ip",
      "-require-healthy",
      "-metrics-addr",
      "off",
      "-log-level",
      "debug",
      "etcd://10.0.0.1:2379,10.0.0.2/services/pg/",
    ]);
    assert.equal(o.ip, "192.0.2.10");
    assert.equal(o.hostname, "node1");
    assert.equal(o.internal, true);
    assert.equal(o.explicit, true);
    assert.deepEqual(o.tags, ["a", "b,c"]);
    assert.equal(o.ttl, 10);
    assert.equal(o.ttlRefresh, 5);
    assert.equal(o.resync, 0);
    assert.equal(o.deregister, "on-success");
    assert.equal(o.cleanup, true);
    assert.equal(o.retryAttempts, 3);
    assert.equal(o.retryInterval, 500);
    assert.equal(o.useIpFromLabel, "com.example.ip");
    assert.equal(o.requireHealthy, true);
    assert.equal(o.metricsAddr, null);
    assert.equal(o.logLevel, "debug");
    assert.deepEqual(o.registry, {
      hosts: [
        { host: "10.0.0.1", port: 2379 },
        { host: "10.0.0.2", port: 2379 },
      ],
      prefix: "/services/pg",
    });
  });

  it("environment variables, and flags over them", () => {
    const env = {
      REGISTRATOR_TTL: "0",
      REGISTRATOR_HOSTNAME: "env-host",
      REGISTRATOR_INTERNAL: "true",
      DOCKER_HOST: "tcp://127.0.0.1:2375",
      REGISTRATOR_URI: "etcd://etcd:2379/x",
    };
    const o = parse([], env);
    assert.equal(o.ttl, 0);
    assert.equal(o.hostname, "env-host");
    assert.equal(o.internal, true);
    assert.equal(o.dockerHost.kind, "tcp");
    assert.equal(o.registry.prefix, "/x");
    assert.equal(parse(["-ttl", "7", "etcd://etcd:2379/y"], env).ttl, 7);
    assert.equal(parse(["-ttl", "7", "etcd://etcd:2379/y"], env).registry.prefix, "/y");
  });

  const uris: [string, unknown][] = [
    ["etcd://", { hosts: [{ host: "127.0.0.1", port: 2379 }], prefix: "" }],
    ["etcd://etcd", { hosts: [{ host: "etcd", port: 2379 }], prefix: "" }],
    ["etcd://[::1]:2379/p", { hosts: [{ host: "::1", port: 2379 }], prefix: "/p" }],
    ["ETCD://h:1/a/b", { hosts: [{ host: "h", port: 1 }], prefix: "/a/b" }],
    ["etcd://h:1/", { hosts: [{ host: "h", port: 1 }], prefix: "" }],
  ];
  for (const [uri, want] of uris) it(`parses ${uri}`, () => assert.deepEqual(parseRegistryUri(uri), want));

  const bad: [string[], Record<string, string>, RegExp][] = [
    [[], {}, /^registrator: missing argument REGISTRY_URI: expected etcd:\/\/HOST:PORT/],
    [["consul://h:8500"], {}, /invalid REGISTRY_URI "consul:\/\/h:8500".*only the etcd backend/],
    [["etcd://h:99999"], {}, /invalid REGISTRY_URI "etcd:\/\/h:99999"/],
    [["etcd://user:pw@h:2379"], {}, /credentials do not belong in the URI/],
    [["etcd://a,,b"], {}, /empty host/],
    [["etcd://h/a b"], {}, /bad prefix/],
    [["-ttl", "-5", "etcd://h"], {}, /invalid value "-5" for -ttl: expected an integer from 0 to 86400/],
    [["-ttl", "ten", "etcd://h"], {}, /invalid value "ten" for -ttl/],
    [["-deregister", "never", "etcd://h"], {}, /expected one of always, on-success/],
    [
      ["-ip", "not-an-ip", "etcd://h"],
      {},
      /invalid value "not-an-ip" for -ip: expected an IPv4 or IPv6 address, or swarm/,
    ],
    [["-hostname", "a/b", "etcd://h"], {}, /invalid value "a\/b" for -hostname/],
    [["-retry-attempts", "-2", "etcd://h"], {}, /expected an integer >= -1/],
    [["-metrics-addr", "nowhere", "etcd://h"], {}, /-metrics-addr: expected HOST:PORT/],
    [["-bogus", "etcd://h"], {}, /unknown option "-bogus"/],
    [["-patroni-namespace", "service", "etcd://h"], {}, /invalid value "service" for -patroni-namespace/],
    [["etcd://h", "extra"], {}, /unexpected argument "extra"/],
    [["-etcd-cert", "/c.pem", "etcd://h"], {}, /-etcd-cert and -etcd-key must be given together/],
    [
      ["etcd://h"],
      { DOCKER_HOST: "ssh://me@host" },
      /invalid value "ssh:\/\/me@host" for -docker-host \(from DOCKER_HOST\)/,
    ],
    [["etcd://h"], { DOCKER_HOST: "unix://relative.sock" }, /the socket path must be absolute/],
    [[], { REGISTRATOR_URI: "http://h" }, /invalid REGISTRATOR_URI "http:\/\/h"/],
  ];
  for (const [argv, env, pattern] of bad) {
    it(`rejects ${JSON.stringify(argv)} ${JSON.stringify(env)} with one line`, () => {
      assert.throws(
        () => parseOptions(argv, env, "os-host"),
        (err: unknown) =>
          err instanceof ConfigError && pattern.test(err.message) && !err.message.includes("\n"),
      );
    });
  }

  it("-hostname or REGISTRATOR_HOSTNAME given: used as is", () => {
    const o = parse(["-hostname", "ok", "etcd://h"]);
    assert.deepEqual([o.hostname, o.hostnameGiven], ["ok", true]);
    assert.equal(parse(["etcd://h"], { REGISTRATOR_HOSTNAME: "envhost" }).hostname, "envhost");
  });

  it("the default hostname: the engine's name and a hash of its ID, unique per Docker host", () => {
    const a = engineHostname({ Name: "db-host", ID: "a3f1c2d4-0000-4000-8000-000000000001" });
    const b = engineHostname({ Name: "db-host", ID: "a3f1c2d4-0000-4000-8000-000000000002" });
    assert.match(a ?? "", /^db-host-[0-9a-f]{8}$/);
    assert.notEqual(a, b, "two hosts named alike differ");
    assert.equal(
      a,
      engineHostname({ Name: "db-host", ID: "a3f1c2d4-0000-4000-8000-000000000001" }),
      "stable",
    );
    // An old-style engine ID holds colons; a name could hold anything: neither reaches the key.
    const odd = engineHostname({ Name: "my host:1/x", ID: "ABCD:EFGH:IJKL" }) ?? "";
    assert.match(odd, /^my-host-1-x-[0-9a-f]{8}$/);
    assert.equal(engineHostname({ Name: "db-host" }), null);
    assert.equal(engineHostname({ ID: "x" }), null);
  });

  it("never echoes a secret in an error", () => {
    assert.throws(
      () => parseOptions(["-etcd-password"], {}, "h"),
      (err: unknown) => err instanceof ConfigError && /needs a value/.test(err.message),
    );
  });
});

describe("the built CLI", () => {
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [MAIN, ...args], {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 20_000,
    });

  it("--help lists every option with its env var and default, exit 0", () => {
    const r = run(["--help"]);
    assert.equal(r.status, 0);
    for (const flag of [
      "-ip",
      "-hostname",
      "-internal",
      "-explicit",
      "-tags",
      "-ttl",
      "-ttl-refresh",
      "-resync",
      "-deregister",
      "-cleanup",
      "-retry-attempts",
      "-retry-interval",
      "-useIpFromLabel",
      "-require-healthy",
      "-release-dead-leaders",
      "-patroni-namespace",
      "-metrics-addr",
      "-log-level",
      "-docker-host",
      "-etcd-user",
      "-etcd-password",
      "-etcd-ca",
      "-etcd-cert",
      "-etcd-key",
    ]) {
      const line = r.stdout.split("\n").findIndex((l) => l.startsWith(`  ${flag} `) || l === `  ${flag}`);
      assert.ok(line >= 0, `${flag} is listed`);
      const desc = r.stdout.split("\n")[line + 1]!;
      assert.match(desc, /\[env [A-Z_]+/, `${flag} names its env var`);
      if (flag !== "-etcd-password") assert.match(desc, /default /, `${flag} names its default`);
    }
    assert.match(r.stdout, /env DOCKER_HOST; default unix:\/\/\/var\/run\/docker\.sock/);
    assert.match(r.stdout, /REGISTRY_URI/);
  });

  it("exits 1 with the reason once -retry-attempts to reach etcd are used up", async () => {
    const port = await freePort(); // nothing listens there
    const r = run([
      "-hostname",
      "h1",
      "-retry-attempts",
      "1",
      "-retry-interval",
      "50",
      "-metrics-addr",
      "off",
      "-docker-host",
      "unix:///nonexistent/docker.sock",
      `etcd://127.0.0.1:${port}`,
    ]);
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /"level":"fatal".*etcd did not answer after 2 attempt\(s\)/);
  });

  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["-etcd-ca", "/nonexistent/ca.pem", "etcd://h"],
      {},
      /^registrator: cannot read the -etcd-ca file "\/nonexistent\/ca.pem" \(ENOENT\)\n$/,
    ],
    [
      ["-ttl", "abc", "etcd://127.0.0.1:2379"],
      {},
      /^registrator: invalid value "abc" for -ttl: expected an integer from 0 to 86400\n$/,
    ],
    [
      [],
      {},
      /^registrator: missing argument REGISTRY_URI: expected etcd:\/\/HOST:PORT\[,HOST:PORT\.\.\.\]\[\/PREFIX\] \(see registrator --help\)\n$/,
    ],
    [
      ["redis://x"],
      {},
      /^registrator: invalid REGISTRY_URI "redis:\/\/x": expected .* \(only the etcd backend is supported\)\n$/,
    ],
    [
      ["etcd://h"],
      { REGISTRATOR_ETCD_PASSWORD: "s3cret", DOCKER_HOST: "bogus" },
      /^registrator: invalid value "bogus" for -docker-host \(from DOCKER_HOST\)/,
    ],
  ];
  for (const [args, env, pattern] of cases) {
    it(`exits 2 with one line for ${JSON.stringify(args)} ${JSON.stringify(env)}`, () => {
      const r = run(args, env);
      assert.equal(r.status, 2);
      assert.match(r.stderr, pattern);
      assert.equal(r.stdout, "");
      assert.ok(!r.stderr.includes("s3cret"));
    });
  }
});
