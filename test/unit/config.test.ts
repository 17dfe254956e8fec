import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { helpText, opt, type ProgramSpec, parseArgs } from "../../shared/config.js";
import { ConfigError } from "../../shared/errors.js";
import { parseHostPort } from "../../shared/host-port.js";

const options = {
  scope: opt.requiredString({
    flag: "scope",
    env: "DEMO_SCOPE",
    description: "Patroni scope",
    metavar: "NAME",
  }),
  listen: opt.hostPort({
    flag: "listen",
    env: "DEMO_LISTEN",
    description: "where to listen",
    default: "0.0.0.0:5432",
  }),
  replica: opt.hostPort({
    flag: "replica-listen",
    env: "DEMO_REPLICA_LISTEN",
    description: "replica port",
    default: "0.0.0.0:5433",
    allowOff: true,
  }),
  ttl: opt.int({ flag: "ttl", env: "DEMO_TTL", description: "lease TTL", default: 30, min: 0, max: 3600 }),
  hold: opt.seconds({ flag: "hold-timeout", description: "hold", default: 30 }),
  internal: opt.bool({ flag: "internal", env: "DEMO_INTERNAL", description: "use internal addresses" }),
  check: opt.oneOf({
    flag: "check",
    description: "check mode",
    values: ["both", "etcd", "rest"] as const,
    default: "both",
  }),
  route: opt.repeat(
    { flag: "route", env: "DEMO_ROUTES", description: "routes", accepted: "SCOPE=HOST:PORT" },
    (raw) => {
      const [s, hp] = raw.split("=");
      if (!s || !hp) throw new Error("unreachable in this test");
      return { scope: s, listen: parseHostPort(hp) };
    },
  ),
  password: opt.optionalString({
    flag: "password",
    env: "DEMO_PASSWORD",
    description: "secret",
    secret: true,
  }),
  etcd: opt.hostPortList({ flag: "etcd", env: "DEMO_ETCD", description: "etcd", default: "127.0.0.1:2379" }),
};
const spec: ProgramSpec<typeof options, undefined> = { program: "demo", summary: "A demo program.", options };

function parse(argv: string[], env: Record<string, string> = {}) {
  const r = parseArgs(spec, argv, env);
  assert.equal(r.kind, "config");
  if (r.kind !== "config") throw new Error("unreachable");
  return r.config;
}

function failsWith(argv: string[], env: Record<string, string>, pattern: RegExp) {
  assert.throws(
    () => parseArgs(spec, argv, env),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
      assert.match(err.message, pattern);
      assert.doesNotMatch(err.message, /\n/, "the error is one line");
      return true;
    },
  );
}

describe("config", () => {
  it("uses defaults, then env, then flags", () => {
    const a = parse(["--scope", "demo"]);
    assert.deepEqual(a.listen, { host: "0.0.0.0", port: 5432 });
    assert.equal(a.ttl, 30);
    assert.equal(a.internal, false);
    assert.equal(a.check, "both");
    const b = parse([], { DEMO_SCOPE: "fromenv", DEMO_TTL: "10", DEMO_INTERNAL: "true" });
    assert.equal(b.scope, "fromenv");
    assert.equal(b.ttl, 10);
    assert.equal(b.internal, true);
    const c = parse(["-scope=flag", "-ttl", "5", "-internal=false"], {
      DEMO_SCOPE: "env",
      DEMO_TTL: "10",
      DEMO_INTERNAL: "1",
    });
    assert.equal(c.scope, "flag");
    assert.equal(c.ttl, 5);
    assert.equal(c.internal, false);
  });

  it("accepts single- and double-dash flags, = and separate values", () => {
    const a = parse(["-scope", "x", "--listen=127.0.0.1:6000", "-hold-timeout", "500ms", "--check", "rest"]);
    assert.deepEqual(a.listen, { host: "127.0.0.1", port: 6000 });
    assert.equal(a.hold, 0.5);
    assert.equal(a.check, "rest");
  });

  it("parses off, IPv6 and host lists", () => {
    const a = parse([
      "--scope",
      "x",
      "--replica-listen",
      "off",
      "--listen",
      "[::1]:7000",
      "--etcd",
      "a:1, b:2",
    ]);
    assert.equal(a.replica, null);
    assert.deepEqual(a.listen, { host: "::1", port: 7000 });
    assert.deepEqual(a.etcd, [
      { host: "a", port: 1 },
      { host: "b", port: 2 },
    ]);
  });

  it("collects repeatable flags and splits their env var", () => {
    const a = parse(["--scope", "x", "--route", "a=h:1", "--route", "b=h:2"]);
    assert.deepEqual(
      a.route.map((r) => r.scope),
      ["a", "b"],
    );
    const b = parse(["--scope", "x"], { DEMO_ROUTES: "a=h:1;b=h:2" });
    assert.equal(b.route.length, 2);
  });

  it("names the option, the value and what is accepted", () => {
    failsWith(
      ["--scope", "x", "--ttl", "abc"],
      {},
      /invalid value "abc" for -ttl: expected an integer from 0 to 3600/,
    );
    failsWith(
      ["--scope", "x"],
      { DEMO_TTL: "-4" },
      /"-4" for -ttl \(from DEMO_TTL\): expected an integer from 0 to 3600/,
    );
    failsWith(["--scope", "x", "--listen", "nowhere"], {}, /-listen: expected HOST:PORT .*missing port/);
    failsWith(
      ["--scope", "x", "--listen", "h:99999"],
      {},
      /-listen: expected HOST:PORT with a port from 1 to 65535/,
    );
    failsWith(
      ["--scope", "x", "--check", "maybe"],
      {},
      /"maybe" for -check: expected one of both, etcd, rest/,
    );
    failsWith(["--scope", "x", "--internal=perhaps"], {}, /-internal: expected true or false/);
    failsWith([], {}, /missing required -scope or DEMO_SCOPE/);
    failsWith(["--scope"], {}, /option -scope needs a value/);
  });

  it("rejects unknown flags and extra arguments", () => {
    failsWith(["--scope", "x", "--colour", "red"], {}, /unknown option "--colour"/);
    failsWith(["--scope", "x", "stray"], {}, /unexpected argument "stray"/);
  });

  it("a mistyped flag with an inline value does not echo the value (it may be a secret)", () => {
    assert.throws(
      () => parseArgs(spec, ["--scope", "x", "--etcd-pasword=hunter2"], {}),
      (err: unknown) => {
        assert.match((err as Error).message, /unknown option "--etcd-pasword=…"/);
        assert.ok(!(err as Error).message.includes("hunter2"));
        return true;
      },
    );
  });

  it("never echoes a secret value", () => {
    const s2 = {
      program: "demo",
      summary: "s",
      options: {
        port: opt.int({ flag: "port", description: "p", default: 1, min: 1, max: 2, secret: true }),
      },
    };
    assert.throws(
      () => parseArgs(s2, ["--port", "hunter2"], {}),
      (err: unknown) =>
        err instanceof ConfigError && !err.message.includes("hunter2") && err.message.includes("(hidden)"),
    );
  });

  it("lists every option with its env var and default in --help", () => {
    const r = parseArgs(spec, ["--help"], {});
    assert.equal(r.kind, "help");
    const text = r.kind === "help" ? r.text : "";
    assert.equal(text, helpText(spec));
    for (const o of Object.values(options)) {
      assert.ok(text.includes(`-${o.flag}`), `help mentions -${o.flag}`);
      if (o.env) assert.ok(text.includes(`env ${o.env}`), `help mentions ${o.env}`);
    }
    assert.match(text, /default 0\.0\.0\.0:5432/);
    assert.match(text, /default 30/);
    assert.match(text, /-scope NAME\n.*required/);
  });
});
