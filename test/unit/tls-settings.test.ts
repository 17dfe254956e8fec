/**
 * TLS settings as the parts render and check them: the agent's patroni.yml with and without
 * a node certificate and etcd client certificate, the agent's refusals of half-given TLS
 * settings, unreadable PEM files named with their option, and scripts/certs.sh's files
 * (modes, owners, idempotence, renewal when names change).
 */
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";
import { type AgentConfig, parseAgentConfig } from "../../agent/config.js";
import type { NodeAddresses } from "../../agent/discovery.js";
import { renderPatroniConfig, tlsPaths, toYaml } from "../../agent/patroni-config.js";
import { routerSpec } from "../../router/options.js";
import { parseArgs } from "../../shared/config.js";
import { ConfigError } from "../../shared/errors.js";
import { etcdClientOptions, readEtcdTls } from "../../shared/etcd.js";
import { readPemFile } from "../../shared/tls.js";
import { AGENT_ENV } from "../harness/fixtures.js";

// The agent's required environment; two etcd endpoints, and the registrator's hostname.
const ENV: Record<string, string> = {
  ...AGENT_ENV,
  ETCD_HOSTS: "etcd1:2379,etcd2:2379",
  DOCKER_HOSTNAME: "local",
};
const TLS_ENV: Record<string, string> = {
  ETCD_CA: "/etc/pgha/tls/ca.crt",
  ETCD_CERT: "/etc/pgha/tls/tls.crt",
  ETCD_KEY: "/etc/pgha/tls/tls.key",
  TLS_CA_FILE: "/etc/pgha/tls/ca.crt",
  TLS_CERT_FILE: "/etc/pgha/tls/tls.crt",
  TLS_KEY_FILE: "/etc/pgha/tls/tls.key",
};
const ADDR: NodeAddresses = {
  postgres: { host: "172.18.0.5", port: 5432 },
  api: { host: "172.18.0.5", port: 8008 },
};

function cfg(extra: Record<string, string> = {}): AgentConfig {
  const r = parseAgentConfig([], { ...ENV, ...extra });
  if (r.kind !== "config") throw new Error("unreachable");
  return r.config;
}

// biome-ignore lint/suspicious/noExplicitAny: the YAML Patroni reads, navigated by key
function rendered(extra: Record<string, string> = {}): any {
  return parse(toYaml(renderPatroniConfig(cfg(extra), ADDR)), { version: "1.1" });
}

describe("patroni.yml with TLS", () => {
  const p = tlsPaths("/etc/patroni/patroni.yml");

  it("etcd over https with the agent's client certificate (copies Patroni, as postgres, may read)", () => {
    assert.deepEqual(rendered(TLS_ENV).etcd3, {
      hosts: ["etcd1:2379", "etcd2:2379"],
      protocol: "https",
      cacert: "/etc/patroni/tls/etcd-ca.crt",
      cert: "/etc/patroni/tls/etcd-client.crt",
      key: "/etc/patroni/tls/etcd-client.key",
    });
  });

  it("the REST API serves https; patronictl and Patroni's member calls check the chain against the CA", () => {
    const y = rendered(TLS_ENV);
    assert.equal(y.restapi.certfile, p.cert);
    assert.equal(y.restapi.keyfile, p.key);
    assert.equal(y.restapi.cafile, p.ca);
    assert.deepEqual(y.ctl, { insecure: true, certfile: p.cert, keyfile: p.key, cacert: p.ca });
  });

  it("PostgreSQL turns ssl on with the node's certificate", () => {
    const params = rendered(TLS_ENV).postgresql.parameters;
    assert.equal(params.ssl, "on");
    assert.equal(params.ssl_cert_file, p.cert);
    assert.equal(params.ssl_key_file, p.key);
  });

  it("without TLS settings (the docker run tutorial) nothing of TLS is rendered", () => {
    const y = rendered();
    assert.deepEqual(y.etcd3, { hosts: ["etcd1:2379", "etcd2:2379"] });
    assert.equal(y.ctl, undefined);
    assert.equal(y.restapi.certfile, undefined);
    assert.equal(y.postgresql.parameters.ssl, undefined);
    assert.equal(cfg().tls, null);
  });

  it("etcd TLS alone: Patroni's etcd3 section only", () => {
    const { TLS_CA_FILE: _a, TLS_CERT_FILE: _b, TLS_KEY_FILE: _c, ...etcdOnly } = TLS_ENV;
    const y = rendered(etcdOnly);
    assert.equal(y.etcd3.protocol, "https");
    assert.equal(y.restapi.certfile, undefined);
    assert.equal(y.postgresql.parameters.ssl, undefined);
  });
});

describe("the router's REST TLS settings", () => {
  it("the name checked on Patroni's certificates: --rest-server-name or ROUTER_REST_SERVER_NAME", () => {
    const r = parseArgs(routerSpec, [], {
      ROUTER_SCOPE: "demo",
      ROUTER_REST_CA: "/etc/pgha/tls/ca.crt",
      ROUTER_REST_SERVER_NAME: "pgha-agent",
    });
    assert.equal(r.kind, "config");
    if (r.kind !== "config") return;
    assert.equal(r.config.restCa, "/etc/pgha/tls/ca.crt");
    assert.equal(r.config.restServerName, "pgha-agent");
    const flag = parseArgs(routerSpec, ["--scope", "demo", "--rest-server-name", "other"], {});
    assert.equal(flag.kind === "config" && flag.config.restServerName, "other");
  });
});

describe("the router stops at start with one line for a TLS file it cannot read", () => {
  const router = join(import.meta.dirname, "../../router/main.js");
  const table: [string[], RegExp][] = [
    [
      ["--etcd-ca", "/nonexistent/ca.pem"],
      /^router: cannot read the etcd CA file \/nonexistent\/ca\.pem \(--etcd-ca \/ ROUTER_ETCD_CA\): no such file\n$/,
    ],
    [
      ["--rest-ca", "/etc"],
      /^router: cannot read the REST API CA file \/etc \(--rest-ca \/ ROUTER_REST_CA\): a directory, not a file\n$/,
    ],
    [["--etcd-cert", "/etc/hostname", "--etcd-key", "/etc/hostname"], /^router: --etcd-cert needs --etcd-ca/],
  ];
  for (const [args, message] of table) {
    it(args.join(" "), () => {
      const r = spawnSync(process.execPath, [router, "--scope", "demo", ...args], {
        encoding: "utf8",
        env: {},
      });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, message);
    });
  }
});

describe("half-given TLS settings are refused with one line", () => {
  const table: [string, Record<string, string>, RegExp][] = [
    [
      "a node certificate without its key",
      { TLS_CERT_FILE: "/x", TLS_CA_FILE: "/c" },
      /TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE go together/,
    ],
    ["a node certificate without the CA", { TLS_CERT_FILE: "/x", TLS_KEY_FILE: "/k" }, /go together/],
    [
      "an etcd certificate without its key",
      { ETCD_CA: "/c", ETCD_CERT: "/x" },
      /-etcd-cert and -etcd-key must be given together/,
    ],
    ["an etcd certificate without the CA", { ETCD_CERT: "/x", ETCD_KEY: "/k" }, /ETCD_CERT needs ETCD_CA/],
  ];
  for (const [what, env, message] of table) {
    it(what, () =>
      assert.throws(
        () => cfg(env),
        (e: unknown) => e instanceof ConfigError && message.test(e.message),
      ),
    );
  }
});

describe("PEM files that cannot be used are named with their option", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgha-pem-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("a missing file, a directory, a file that is not PEM", () => {
    assert.throws(
      () => readPemFile(join(dir, "nope.crt"), "etcd CA file", "--etcd-ca"),
      /cannot read the etcd CA file .*nope\.crt \(--etcd-ca\): no such file/,
    );
    assert.throws(() => readPemFile(dir, "etcd CA file", "--etcd-ca"), /a directory, not a file/);
    writeFileSync(join(dir, "junk.crt"), "not a certificate\n");
    assert.throws(
      () => readPemFile(join(dir, "junk.crt"), "etcd CA file", "--etcd-ca"),
      /holds no PEM block/,
    );
  });

  it("a key this account may not read: permission denied, with the account", () => {
    const key = join(dir, "key.pem");
    writeFileSync(key, "-----BEGIN PRIVATE KEY-----\n");
    chmodSync(key, 0o600);
    if (process.getuid?.() !== 0) {
      chmodSync(key, 0);
      assert.throws(() => readPemFile(key, "etcd client key", "--etcd-key"), /permission denied for uid/);
      return;
    }
    // As root, whom modes do not stop: the read is made as nobody (a service's own account),
    // from a copy of the module that nobody may read (the checkout's own directory may not be).
    chmodSync(dir, 0o755);
    const mod = join(dir, "mod");
    mkdirSync(mod, { mode: 0o755 });
    writeFileSync(join(mod, "package.json"), '{"type":"module"}\n', { mode: 0o644 });
    for (const f of ["tls.js", "errors.js"]) {
      copyFileSync(join(import.meta.dirname, "../../shared", f), join(mod, f));
      chmodSync(join(mod, f), 0o644);
    }
    const tls = join(mod, "tls.js");
    const script = `import(${JSON.stringify(tls)}).then((m) => { try { m.readPemFile(${JSON.stringify(key)}, "etcd client key", "--etcd-key"); } catch (e) { process.stdout.write(e.message); } })`;
    const out = execFileSync(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script],
      { encoding: "utf8" },
    );
    assert.match(
      out,
      /cannot read the etcd client key .*key\.pem \(--etcd-key\): permission denied for uid 65534/,
    );
  });

  it("etcd client options: https endpoints, the files read, and the name checked instead of the host's", () => {
    const certsDir = join(dir, "certs");
    execFileSync(join(import.meta.dirname, "../../../scripts/certs.sh"), ["--dir", certsDir], {
      env: { PATH: process.env["PATH"] },
      stdio: "pipe",
    });
    const a = join(certsDir, "agent");
    const o = etcdClientOptions({
      hosts: [{ host: "172.18.0.2", port: 2379 }],
      caFile: join(a, "ca.crt"),
      certFile: join(a, "tls.crt"),
      keyFile: join(a, "tls.key"),
      serverName: "etcd1",
    });
    assert.deepEqual(o.hosts, ["https://172.18.0.2:2379"]);
    assert.ok(o.credentials?.certChain && o.credentials.privateKey);
    assert.equal(o.grpcOptions?.["grpc.ssl_target_name_override"], "etcd1");
    const plain = etcdClientOptions({ hosts: [{ host: "etcd1", port: 2379 }] });
    assert.deepEqual(plain.hosts, ["http://etcd1:2379"]);
    assert.equal(plain.credentials, undefined);
  });

  it("etcd client options: a certificate without a CA, or without its key", () => {
    const names = { ca: "--etcd-ca", cert: "--etcd-cert", key: "--etcd-key" };
    assert.throws(
      () => readEtcdTls({ hosts: [], certFile: "/x", keyFile: "/y" }, names),
      /--etcd-cert needs --etcd-ca/,
    );
    assert.throws(
      () => readEtcdTls({ hosts: [], caFile: "/c", certFile: "/x" }, names),
      /must be given together/,
    );
    assert.equal(readEtcdTls({ hosts: [] }, names), null);
  });
});

describe("scripts/certs.sh", () => {
  const dir = mkdtempSync(join(tmpdir(), "pgha-certs-"));
  const tls = join(dir, "tls");
  after(() => rmSync(dir, { recursive: true, force: true }));
  const certs = (...args: string[]) =>
    execFileSync(join(import.meta.dirname, "../../../scripts/certs.sh"), ["--dir", tls, ...args], {
      env: { PATH: process.env["PATH"], COMPOSE_PROJECT_NAME: "demo" },
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  const text = (file: string) =>
    execFileSync("openssl", ["x509", "-in", join(tls, file), "-noout", "-text"], { encoding: "utf8" });
  const mode = (file: string) => statSync(join(tls, file)).mode & 0o777;

  it("makes a CA and one certificate per part: keys 0600, certificates 0644, the CA's key only at the top", () => {
    certs("--ip", "192.0.2.10");
    assert.equal(mode("ca.key"), 0o600);
    assert.equal(mode("ca.crt"), 0o644);
    for (const part of ["etcd", "agent", "router", "registrator"]) {
      assert.equal(mode(`${part}/tls.key`), 0o600, part);
      assert.equal(mode(`${part}/tls.crt`), 0o644, part);
      assert.equal(
        readFileSync(join(tls, part, "ca.crt"), "utf8"),
        readFileSync(join(tls, "ca.crt"), "utf8"),
      );
      assert.throws(() => statSync(join(tls, part, "ca.key")), /ENOENT/);
    }
    assert.throws(() => statSync(join(tls, "prometheus", "tls.key")), /ENOENT/);
    if (process.getuid?.() === 0) {
      assert.equal(statSync(join(tls, "router", "tls.key")).uid, 10002);
      assert.equal(statSync(join(tls, "registrator", "tls.key")).uid, 10001);
      assert.equal(statSync(join(tls, "agent", "tls.key")).uid, 0);
    }
  });

  it("names: the router's and the agents' on the node certificate, the members' on etcd's, the host's IP on both", () => {
    const agent = text("agent/tls.crt");
    for (const n of [
      "DNS:pgha-agent",
      "DNS:router",
      "DNS:localhost",
      "IP Address:127.0.0.1",
      "DNS:demo-pg1",
      "IP Address:192.0.2.10",
    ]) {
      assert.ok(agent.includes(n), `${n} in ${agent}`);
    }
    assert.match(agent, /TLS Web Server Authentication, TLS Web Client Authentication/);
    const etcd = text("etcd/tls.crt");
    for (const n of ["DNS:etcd1", "DNS:etcd3", "IP Address:127.0.0.1", "IP Address:192.0.2.10"])
      assert.ok(etcd.includes(n), n);
    assert.match(text("router/tls.crt"), /TLS Web Client Authentication/);
    assert.doesNotMatch(text("router/tls.crt"), /Server Authentication/);
  });

  it("again with the same names: nothing is made anew; with another IP: the certificates, not the CA", () => {
    const before = (f: string) => readFileSync(join(tls, f), "utf8");
    const ca = before("ca.crt");
    const agent = before("agent/tls.crt");
    const key = before("agent/tls.key");
    certs("--ip", "192.0.2.10");
    assert.equal(before("agent/tls.crt"), agent);
    assert.equal(before("agent/tls.key"), key);
    certs("--ip", "192.0.2.10", "--ip", "192.0.2.11");
    assert.equal(before("ca.crt"), ca, "the CA is kept");
    assert.notEqual(before("agent/tls.crt"), agent);
    assert.ok(text("agent/tls.crt").includes("IP Address:192.0.2.11"));
    assert.equal(mode("agent/tls.key"), 0o600);
    execFileSync("openssl", ["verify", "-CAfile", join(tls, "ca.crt"), join(tls, "agent/tls.crt")]);
  });

  it("a host holding the certificates without the CA's key: checks them, and refuses to make new ones", () => {
    const copy = join(dir, "copy");
    execFileSync("cp", ["-a", tls, copy]);
    rmSync(join(copy, "ca.key"));
    const run = (...args: string[]) =>
      execFileSync(join(import.meta.dirname, "../../../scripts/certs.sh"), ["--dir", copy, ...args], {
        env: { PATH: process.env["PATH"], COMPOSE_PROJECT_NAME: "demo" },
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
    run("--ip", "192.0.2.10", "--ip", "192.0.2.11");
    assert.throws(() => run("--ip", "192.0.2.12"), /must be made again .*ca\.key is not on this host/);
  });

  it("refuses what is not an address", () => {
    assert.throws(() => certs("--ip", "not-an-ip"), /expected an IPv4 or IPv6 address/);
  });
});
