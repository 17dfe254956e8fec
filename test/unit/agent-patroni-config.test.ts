import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { AGENT_ENV_NAMES, type AgentConfig, parseAgentConfig } from "../../agent/config.js";
import type { NodeAddresses } from "../../agent/discovery.js";
import { bootstrapSql, renderPatroniConfig, toYaml } from "../../agent/patroni-config.js";
import { exitCodeOf, patroniEnv } from "../../agent/supervisor.js";

const ENV: Record<string, string> = {
  NAME: "john",
  PATRONI_SCOPE: "demo",
  ETCD_HOSTS: "10.0.0.1:2379,10.0.0.2:2379",
  DOCKER_HOSTNAME: "192.168.99.100",
  POSTGRES_USERNAME: "admin",
  POSTGRES_PASSWORD: "admin: pw #1",
  REPLICATION_PASSWORD: "repl'pw",
  SUPERUSER_PASSWORD: 'super"pw',
  RESTAPI_PASSWORD: "on",
  PG_MAJOR: "17",
};
const ADDR: NodeAddresses = {
  postgres: { host: "192.168.99.100", port: 40000 },
  api: { host: "192.168.99.100", port: 40001 },
};

function cfg(extra: Record<string, string> = {}): AgentConfig {
  const r = parseAgentConfig([], { ...ENV, ...extra });
  if (r.kind !== "config") throw new Error("unreachable");
  return r.config;
}

interface Rendered {
  readonly postgresql: { pg_hba: string[]; pg_ident: string[]; connect_address: string };
  readonly restapi: { connect_address: string };
}

/** What Patroni reads: the YAML text parsed back as YAML 1.1 (PyYAML's dialect). */
function rendered(extra: Record<string, string> = {}, addr = ADDR): Rendered {
  return parse(toYaml(renderPatroniConfig(cfg(extra), addr)), { version: "1.1" }) as Rendered;
}

describe("patroni.yml rendered from the configuration", () => {
  const table: [string, Record<string, string>, string, unknown][] = [
    ["scope", {}, "scope", "demo"],
    ["member name", {}, "name", "john"],
    ["namespace", { PATRONI_NAMESPACE: "/pg/" }, "namespace", "/pg/"],
    ["REST API listens everywhere", {}, "restapi.listen", "0.0.0.0:8008"],
    [
      "REST API connect address = the discovered public address",
      {},
      "restapi.connect_address",
      "192.168.99.100:40001",
    ],
    [
      "REST API authentication (a password that YAML 1.1 would read as a boolean stays a string)",
      {},
      "restapi.authentication",
      { username: "patroni", password: "on" },
    ],
    ["etcd3 hosts", {}, "etcd3.hosts", ["10.0.0.1:2379", "10.0.0.2:2379"]],
    ["no etcd2 section", {}, "etcd", undefined],
    ["etcd credentials when given", { ETCD_USERNAME: "root", ETCD_PASSWORD: "x" }, "etcd3.username", "root"],
    ["no etcd TLS unless given", {}, "etcd3.protocol", undefined],
    [
      "etcd TLS when given: Patroni's etcd3 protocol, and the agent's copies of the CA, certificate and key beside patroni.yml",
      {
        ETCD_CA: "/etc/etcd/ca.pem",
        ETCD_CERT: "/etc/etcd/client.pem",
        ETCD_KEY: "/etc/etcd/client-key.pem",
      },
      "etcd3",
      {
        hosts: ["10.0.0.1:2379", "10.0.0.2:2379"],
        protocol: "https",
        cacert: "/etc/patroni/tls/etcd-ca.crt",
        cert: "/etc/patroni/tls/etcd-client.crt",
        key: "/etc/patroni/tls/etcd-client.key",
      },
    ],
    ["PostgreSQL listens everywhere", {}, "postgresql.listen", "0.0.0.0:5432"],
    [
      "PostgreSQL connect address = the discovered public address",
      {},
      "postgresql.connect_address",
      "192.168.99.100:40000",
    ],
    ["data directory", {}, "postgresql.data_dir", "/data/pgdata"],
    [
      "binaries of the image's PostgreSQL major (PG_MAJOR)",
      {},
      "postgresql.bin_dir",
      "/usr/lib/postgresql/17/bin",
    ],
    ["another major's binaries", { PG_MAJOR: "16" }, "postgresql.bin_dir", "/usr/lib/postgresql/16/bin"],
    ["superuser", {}, "postgresql.authentication.superuser", { username: "postgres", password: 'super"pw' }],
    [
      "replication user",
      {},
      "postgresql.authentication.replication",
      { username: "replicator", password: "repl'pw" },
    ],
    ["rewind as the superuser", {}, "postgresql.authentication.rewind.username", "postgres"],
    ["use_pg_rewind", {}, "bootstrap.dcs.postgresql.use_pg_rewind", true],
    ["replication slots", {}, "bootstrap.dcs.postgresql.use_slots", true],
    ["default ttl", {}, "bootstrap.dcs.ttl", 30],
    [
      "initdb: UTF-8, data checksums, no trust lines, PostgreSQL's 16 MB WAL segments",
      {},
      "bootstrap.initdb",
      [
        { encoding: "UTF8" },
        { locale: "C.UTF-8" },
        "data-checksums",
        { "auth-local": "peer" },
        { "auth-host": "reject" },
        { "wal-segsize": "16" },
      ],
    ],
    ["a chosen WAL segment size", { WAL_SEGMENT_SIZE: "1" }, "bootstrap.initdb.5", { "wal-segsize": "1" }],
    ["default loop_wait", {}, "bootstrap.dcs.loop_wait", 10],
    ["default retry_timeout", {}, "bootstrap.dcs.retry_timeout", 10],
    [
      "ttl from PATRONI_TTL",
      { PATRONI_TTL: "24", PATRONI_LOOP_WAIT: "2", PATRONI_RETRY_TIMEOUT: "5" },
      "bootstrap.dcs.ttl",
      24,
    ],
    ["synchronous mode on by default", {}, "bootstrap.dcs.synchronous_mode", true],
    [
      "asynchronous replication is the explicit opt-out",
      { PATRONI_SYNCHRONOUS_MODE: "false" },
      "bootstrap.dcs.synchronous_mode",
      false,
    ],
    [
      "synchronous mode on, spelled on",
      { PATRONI_SYNCHRONOUS_MODE: "on" },
      "bootstrap.dcs.synchronous_mode",
      true,
    ],
    [
      "quorum commit (Patroni 4)",
      { PATRONI_SYNCHRONOUS_MODE: "quorum" },
      "bootstrap.dcs.synchronous_mode",
      "quorum",
    ],
    [
      "quorum commit, any case",
      { PATRONI_SYNCHRONOUS_MODE: "Quorum" },
      "bootstrap.dcs.synchronous_mode",
      "quorum",
    ],
    [
      "quorum commit with strict mode",
      { PATRONI_SYNCHRONOUS_MODE: "quorum", PATRONI_SYNCHRONOUS_MODE_STRICT: "true" },
      "bootstrap.dcs.synchronous_mode_strict",
      true,
    ],
    ["every promotion asks the stop fence first", {}, "postgresql.pre_promote", "pgha-pre-promote"],
    [
      "clients in start-up finish it before PostgreSQL stops",
      {},
      "postgresql.before_stop",
      "pgha-before-stop",
    ],
    ["failsafe mode on by default", {}, "bootstrap.dcs.failsafe_mode", true],
    ["failsafe mode off", { PATRONI_FAILSAFE_MODE: "false" }, "bootstrap.dcs.failsafe_mode", false],
    [
      "strict mode on",
      { PATRONI_SYNCHRONOUS_MODE_STRICT: "1" },
      "bootstrap.dcs.synchronous_mode_strict",
      true,
    ],
    ["wal_log_hints for pg_rewind", {}, "bootstrap.dcs.postgresql.parameters.wal_log_hints", "on"],
    [
      "scram-sha-256 passwords",
      {},
      "bootstrap.dcs.postgresql.parameters.password_encryption",
      "scram-sha-256",
    ],
    [
      "archiving off until a backup repository is configured",
      {},
      "postgresql.parameters.archive_mode",
      "off",
    ],
    ["replicas cloned with pg_basebackup", {}, "postgresql.create_replica_methods", ["basebackup"]],
    ["no restore_command without a repository", {}, "postgresql.recovery_conf", undefined],
    ["initdb without a restore", {}, "bootstrap.method", undefined],
    [
      "the admin user created at bootstrap by psql with the bootstrap SQL",
      {},
      "bootstrap.post_bootstrap",
      "pgha-post-bootstrap /etc/patroni/bootstrap/bootstrap.sql",
    ],
    [
      "the bootstrap SQL beside a config file elsewhere",
      { PATRONICTL_CONFIG_FILE: "/srv/patroni/patroni.yml" },
      "bootstrap.post_bootstrap",
      "pgha-post-bootstrap /srv/patroni/bootstrap/bootstrap.sql",
    ],
    ["no password in bootstrap.users", {}, "bootstrap.users", undefined],
    ["no watchdog in a container", {}, "watchdog.mode", "off"],
  ];
  for (const [name, extra, path, want] of table) {
    it(name, () => {
      let v: unknown = rendered(extra);
      for (const part of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[part];
      assert.deepEqual(v, want);
    });
  }

  it("pg_hba: peer over the socket, scram-sha-256 over TCP for every user and replication", () => {
    const hba: string[] = rendered({ REPLICATION_USERNAME: "standby" }).postgresql.pg_hba;
    assert.equal(hba[0], "local all all peer map=container");
    assert.equal(hba[1], "local replication standby peer map=container");
    for (const line of hba.slice(2)) assert.match(line, /^host .* scram-sha-256$/);
    assert.ok(hba.includes("host replication standby 0.0.0.0/0 scram-sha-256"));
    assert.ok(hba.includes("host all all 0.0.0.0/0 scram-sha-256"));
    assert.ok(!hba.some((l) => /\b(trust|md5|password)\b/.test(l)), "no weaker method");
  });

  it("pg_ident: root and postgres in the container map to the superuser, postgres also to replication", () => {
    assert.deepEqual(
      rendered({ SUPERUSER_USERNAME: "dba", REPLICATION_USERNAME: "standby" }).postgresql.pg_ident,
      [
        "container root dba",
        "container postgres dba",
        "container postgres postgres",
        "container postgres standby",
        "container /^(.*)$ \\1",
      ],
    );
  });

  it("Patroni's local replication connection goes over the socket", () => {
    const r = rendered({}) as unknown as { postgresql: Record<string, unknown> };
    assert.equal(r.postgresql["use_unix_socket_repl"], true);
    assert.equal(r.postgresql["use_unix_socket"], true);
  });

  it("IPv6 public addresses are bracketed", () => {
    const r = rendered(
      {},
      { postgres: { host: "fd00::5", port: 5432 }, api: { host: "fd00::5", port: 8008 } },
    );
    assert.equal(r.postgresql.connect_address, "[fd00::5]:5432");
    assert.equal(r.restapi.connect_address, "[fd00::5]:8008");
  });

  it("is a pure function: same input, same text", () => {
    const c = cfg();
    assert.equal(toYaml(renderPatroniConfig(c, ADDR)), toYaml(renderPatroniConfig(c, ADDR)));
  });
});

describe("the bootstrap SQL that creates the admin user", () => {
  const table: [string, { username: string; password: string }, string[]][] = [
    [
      "a plain name and password",
      { username: "admin", password: "secret" },
      [
        `CREATE ROLE "admin" WITH LOGIN CREATEDB NOCREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS PASSWORD 'secret';`,
        `ALTER ROLE "admin" WITH LOGIN CREATEDB NOCREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS PASSWORD 'secret';`,
        `IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'admin') THEN`,
        `GRANT CREATE, CONNECT, TEMPORARY ON DATABASE postgres TO "admin";`,
        `GRANT ALL ON SCHEMA public TO "admin";`,
        `REVOKE pg_read_server_files, pg_write_server_files, pg_execute_server_program FROM "admin";`,
      ],
    ],
    [
      "quotes and backslashes in the password stay inside the literal",
      { username: "app_owner", password: `it's "q" \\ ; DROP ROLE x; --` },
      [
        `CREATE ROLE "app_owner" WITH LOGIN CREATEDB NOCREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS PASSWORD 'it''s "q" \\ ; DROP ROLE x; --';`,
      ],
    ],
    [
      "a mixed-case name keeps its case",
      { username: "Admin", password: "p" },
      [`GRANT ALL ON SCHEMA public TO "Admin";`],
    ],
  ];
  for (const [name, admin, lines] of table) {
    it(name, () => {
      const sql = bootstrapSql(admin)
        .split("\n")
        .map((l) => l.trim());
      for (const line of lines) assert.ok(sql.includes(line), `${line}\nin\n${sql.join("\n")}`);
      // A DO block that creates the role or, in a cluster restored from a backup, updates it; two
      // grants; the revoke of what reaches the operating system.
      const statements = sql.filter((l) => /^(DO|GRANT|CREATE|ALTER|REVOKE)\b/.test(l));
      assert.deepEqual(
        statements.map((l) => l.split(" ")[0]),
        ["DO", "ALTER", "CREATE", "GRANT", "GRANT", "REVOKE"],
      );
      assert.ok(
        !/\bCREATEROLE\b|\bSUPERUSER\b/.test(sql.join("\n").replace(/\bNO(CREATEROLE|SUPERUSER)\b/g, "")),
        "no power over roles or the server",
      );
    });
  }
});

describe("Patroni's environment", () => {
  it("carries PATRONI_* and the basics, never the agent's secrets", () => {
    const env = patroniEnv(
      {
        PATH: "/usr/bin",
        LANG: "C.UTF-8",
        PATRONI_LOG_LEVEL: "DEBUG",
        PATRONI_RESTAPI_ALLOWLIST: "10.0.0.0/8",
        POSTGRES_PASSWORD: "x",
        SUPERUSER_PASSWORD: "y",
        RESTAPI_PASSWORD: "z",
        ETCD_PASSWORD: "w",
        NODE_OPTIONS: "--inspect",
      },
      "/var/lib/postgresql",
      "postgres",
    );
    assert.deepEqual(env, {
      HOME: "/var/lib/postgresql",
      USER: "postgres",
      LOGNAME: "postgres",
      PATH: "/usr/bin",
      LANG: "C.UTF-8",
      PATRONI_LOG_LEVEL: "DEBUG",
      PATRONI_RESTAPI_ALLOWLIST: "10.0.0.0/8",
    });
  });

  it("leaves out every PATRONI_* name the agent reads itself: the agent's value is the one Patroni runs on", () => {
    const env = { ...ENV, PATRONI_SCOPE: "y", PATRONI_LOG_LEVEL: "DEBUG", PATRONI_TTL: "40" };
    const r = parseAgentConfig(["--scope", "x"], env);
    assert.ok(r.kind === "config");
    assert.equal(r.config.scope, "x", "the flag wins over PATRONI_SCOPE");
    const yaml = parse(toYaml(renderPatroniConfig(r.config, ADDR)), { version: "1.1" }) as { scope: string };
    assert.equal(yaml.scope, "x", "patroni.yml says x");
    const patroni = patroniEnv(env, "/var/lib/postgresql", "postgres");
    assert.equal(patroni["PATRONI_SCOPE"], undefined, "so Patroni's environment must not say y");
    assert.equal(patroni["PATRONI_TTL"], undefined);
    assert.equal(patroni["PATRONI_LOG_LEVEL"], "DEBUG", "a name the agent does not read passes through");
  });

  it("leaves out the PATRONI_* names of settings the agent renders itself (a name, etcd, a data directory, a password)", () => {
    const env = {
      ...ENV,
      PATRONI_NAME: "impostor",
      PATRONI_ETCD3_HOSTS: "elsewhere:2379",
      PATRONI_ETCD_HOST: "v2:2379",
      PATRONI_POSTGRESQL_DATA_DIR: "/tmp/other",
      PATRONI_SUPERUSER_PASSWORD: "x",
      PATRONI_RESTAPI_CONNECT_ADDRESS: "1.2.3.4:8008",
      PATRONI_RESTAPI_ALLOWLIST: "10.0.0.0/8",
    };
    const patroni = patroniEnv(env, "/var/lib/postgresql", "postgres");
    for (const name of [
      "PATRONI_NAME",
      "PATRONI_ETCD3_HOSTS",
      "PATRONI_ETCD_HOST",
      "PATRONI_POSTGRESQL_DATA_DIR",
      "PATRONI_SUPERUSER_PASSWORD",
      "PATRONI_RESTAPI_CONNECT_ADDRESS",
    ]) {
      assert.equal(patroni[name], undefined, name);
    }
    assert.equal(
      patroni["PATRONI_RESTAPI_ALLOWLIST"],
      "10.0.0.0/8",
      "a setting the agent does not render passes",
    );
  });

  it("knows every PATRONI_* name of the option table, the backup options' and the _FILE secrets' too", () => {
    for (const name of [
      "PATRONI_SCOPE",
      "PATRONI_NAMESPACE",
      "PATRONI_SYNCHRONOUS_MODE",
      "PATRONI_SYNCHRONOUS_MODE_STRICT",
      "PATRONI_TTL",
      "PATRONI_LOOP_WAIT",
      "PATRONI_RETRY_TIMEOUT",
      "BACKUP_S3_BUCKET",
      "POSTGRES_PASSWORD_FILE",
      "AWS_SECRET_ACCESS_KEY_FILE",
    ]) {
      assert.ok(AGENT_ENV_NAMES.has(name), name);
    }
    const patroni = patroniEnv(
      Object.fromEntries([...AGENT_ENV_NAMES].map((n) => [n, "v"])),
      "/var/lib/postgresql",
      "postgres",
    );
    assert.deepEqual(
      Object.keys(patroni).filter((k) => k.startsWith("PATRONI_")),
      [],
    );
  });

  const codes: [number | null, NodeJS.Signals | null, number][] = [
    [0, null, 0],
    [1, null, 1],
    [null, "SIGTERM", 143],
    [null, "SIGKILL", 137],
  ];
  for (const [code, signal, want] of codes) {
    it(`exit ${code} / ${signal} → container exit code ${want}`, () =>
      assert.equal(exitCodeOf(code, signal), want));
  }
});

describe("hostile passwords reach Patroni intact", () => {
  // What Patroni itself loads patroni.yml with: PyYAML's safe_load (YAML 1.1), in Debian's
  // python3 with python3-yaml (Patroni's dependencies, installed by ./pgha setup).
  const pyLoad = (text: string): unknown =>
    JSON.parse(
      execFileSync(
        "/usr/bin/python3",
        ["-c", "import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
        {
          input: text,
        },
      ).toString(),
    );
  const hostile = [
    "=",
    "<<",
    "&anchor",
    "*alias",
    "!tag",
    "# not a comment",
    "a: b",
    "'single'",
    '"double"',
    "back\\slash",
    "multi\nline",
    "yes",
    "0x1F",
    "1e3",
    "~",
    "- dash",
    "[flow]",
    "{flow: map}",
    "%percent",
    "@at",
    "`tick`",
    "ünïcödé ✓",
    " leading and trailing ",
  ];
  for (const pw of hostile) {
    // A line break cannot go into .pgpass: the agent refuses it there (agent-config tests).
    const pgpass = /[\r\n]/.test(pw) ? "no-line-break" : pw;
    it(`${JSON.stringify(pw)} as every password${pgpass === pw ? "" : " that may hold a line break"}`, () => {
      const r = parseAgentConfig([], {
        ...ENV,
        POSTGRES_PASSWORD: pw,
        REPLICATION_PASSWORD: pgpass,
        SUPERUSER_PASSWORD: pgpass,
        RESTAPI_PASSWORD: pw,
      });
      assert.ok(r.kind === "config");
      const loaded = pyLoad(toYaml(renderPatroniConfig(r.config, ADDR))) as {
        restapi: { authentication: { password: unknown } };
        postgresql: { authentication: Record<string, { password: unknown }> };
      };
      assert.equal(loaded.restapi.authentication.password, pw);
      for (const who of ["superuser", "replication", "rewind"]) {
        assert.equal(loaded.postgresql.authentication[who]!.password, pgpass, who);
      }
    });
  }
});
