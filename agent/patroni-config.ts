/**
 * patroni.yml as a pure function of the agent's configuration and the node's
 * discovered public addresses. Rendered with the `yaml` library; nothing is
 * pasted into text. The agent (main.ts) writes it with files.ts as
 * patroni.yml, mode 0600, and Patroni reads it.
 */
import { dirname, join } from "node:path";
import { Document, isScalar, visit } from "yaml";
import { formatHostPort } from "../shared/host-port.js";
import { backupSettings } from "./backup/index.js";
import type { AgentConfig } from "./config.js";
import type { NodeAddresses } from "./discovery.js";
import {
  BEFORE_STOP_COMMAND,
  IMAGE_PATHS,
  POST_BOOTSTRAP_COMMAND,
  POSTGRES_PORT,
  PRE_PROMOTE_COMMAND,
  pgBinDir,
  RESTAPI_PORT,
} from "./image.js";
import type { SynchronousMode } from "./options.js";

/** SQL run once, when this node creates the cluster; beside patroni.yml (mode 0600: it holds the admin's password). */
export function bootstrapSqlPath(configFile: string): string {
  return join(dirname(configFile), "bootstrap", "bootstrap.sql");
}

/**
 * Where the agent puts the TLS files Patroni and PostgreSQL read: copies of the mounted ones
 * in a root-owned directory beside patroni.yml, the keys owned by postgres with mode 0600
 * (PostgreSQL refuses a key that others may read; the mounted key is root's).
 */
export function tlsPaths(configFile: string) {
  const dir = join(dirname(configFile), "tls");
  return Object.freeze({
    dir,
    ca: join(dir, "ca.crt"),
    cert: join(dir, "server.crt"),
    key: join(dir, "server.key"),
    etcdCa: join(dir, "etcd-ca.crt"),
    etcdCert: join(dir, "etcd-client.crt"),
    etcdKey: join(dir, "etcd-client.key"),
  });
}

/** The pg_ident map that lets root and postgres inside the container use psql over the socket. */
export const LOCAL_MAP = "container";

export const DEFAULT_PG_PARAMETERS = Object.freeze({
  wal_level: "replica",
  hot_standby: "on",
  wal_log_hints: "on",
  max_wal_senders: 10,
  max_replication_slots: 10,
  wal_keep_size: "128MB",
  password_encryption: "scram-sha-256",
});

export function pgHba(replicationUser: string): string[] {
  return [
    `local all all peer map=${LOCAL_MAP}`,
    // Patroni's own replication connection (IDENTIFY_SYSTEM: the timeline a replica reports on
    // REST) over the socket: no SCRAM exchange on each status answer while the timeline changes.
    `local replication ${replicationUser} peer map=${LOCAL_MAP}`,
    `host replication ${replicationUser} 0.0.0.0/0 scram-sha-256`,
    `host replication ${replicationUser} ::/0 scram-sha-256`,
    "host all all 0.0.0.0/0 scram-sha-256",
    "host all all ::/0 scram-sha-256",
  ];
}

/**
 * root and postgres map to the superuser, postgres (Patroni) also to the replication role;
 * every other OS user to the role of its own name.
 */
export function pgIdent(superuser: string, replicationUser: string): string[] {
  const lines = [`${LOCAL_MAP} root ${superuser}`, `${LOCAL_MAP} postgres ${superuser}`];
  if (superuser !== "postgres") lines.push(`${LOCAL_MAP} postgres postgres`);
  if (replicationUser !== superuser && replicationUser !== "postgres") {
    lines.push(`${LOCAL_MAP} postgres ${replicationUser}`);
  }
  lines.push(`${LOCAL_MAP} /^(.*)$ \\1`);
  return lines;
}

/**
 * Patroni's environment names for what `renderPatroniConfig` writes itself. Patroni's
 * environment wins over its file, so these must not reach Patroni: they would quietly undo
 * the rendered file (a different scope, data directory, etcd, password, ...). The agent's own
 * options set these; supervisor.ts drops the names and main warns about them.
 */
const RENDERED_ENV_PREFIXES = ["PATRONI_ETCD3_", "PATRONI_ETCD_"] as const;
const RENDERED_ENV_NAMES: ReadonlySet<string> = new Set([
  "PATRONI_NAME",
  "PATRONI_NAMESPACE",
  "PATRONI_SCOPE",
  "PATRONI_RESTAPI_LISTEN",
  "PATRONI_RESTAPI_CONNECT_ADDRESS",
  "PATRONI_RESTAPI_USERNAME",
  "PATRONI_RESTAPI_PASSWORD",
  "PATRONI_POSTGRESQL_LISTEN",
  "PATRONI_POSTGRESQL_CONNECT_ADDRESS",
  "PATRONI_POSTGRESQL_DATA_DIR",
  "PATRONI_POSTGRESQL_BIN_DIR",
  "PATRONI_POSTGRESQL_PGPASS",
  "PATRONI_SUPERUSER_USERNAME",
  "PATRONI_SUPERUSER_PASSWORD",
  "PATRONI_REPLICATION_USERNAME",
  "PATRONI_REPLICATION_PASSWORD",
  "PATRONI_REWIND_USERNAME",
  "PATRONI_REWIND_PASSWORD",
]);

export function renderedByAgent(envName: string): boolean {
  return RENDERED_ENV_NAMES.has(envName) || RENDERED_ENV_PREFIXES.some((p) => envName.startsWith(p));
}

export type PatroniConfig = Record<string, unknown>;

/** The agent's synchronous mode as Patroni's `synchronous_mode` takes it. */
export const SYNCHRONOUS_MODE_VALUES: Readonly<Record<SynchronousMode, boolean | "quorum">> = Object.freeze({
  off: false,
  on: true,
  quorum: "quorum",
});

export function renderPatroniConfig(cfg: AgentConfig, addr: NodeAddresses): PatroniConfig {
  const backup = backupSettings(cfg.backup);
  const etcd3: Record<string, unknown> = { hosts: cfg.etcd.hosts.map(formatHostPort) };
  if (cfg.etcd.username) {
    etcd3["username"] = cfg.etcd.username;
    etcd3["password"] = cfg.etcd.password ?? "";
  }
  const paths = tlsPaths(cfg.configFile);
  if (cfg.etcd.caFile !== undefined) {
    etcd3["protocol"] = "https";
    etcd3["cacert"] = paths.etcdCa;
    if (cfg.etcd.certFile !== undefined) {
      etcd3["cert"] = paths.etcdCert;
      etcd3["key"] = paths.etcdKey;
    }
  }
  const tls = cfg.tls !== null;
  return {
    scope: cfg.scope,
    namespace: cfg.namespace,
    name: cfg.name,
    restapi: {
      listen: `0.0.0.0:${RESTAPI_PORT}`,
      connect_address: formatHostPort(addr.api),
      // Patroni asks for these on POST, PUT, PATCH and DELETE only; GETs stay open for health checks.
      authentication: { username: cfg.restapi.username, password: cfg.restapi.password },
      ...(tls ? { certfile: paths.cert, keyfile: paths.key, cafile: paths.ca } : {}),
    },
    // patronictl, and Patroni's own calls to other members (failsafe, leader race), check each
    // member's certificate against the CA. `insecure` with a certfile leaves the chain check on
    // and turns only the name check off: members are reached on container addresses that no
    // certificate made in advance can name (request.py: assert_hostname False, CERT_REQUIRED).
    ...(tls ? { ctl: { insecure: true, certfile: paths.cert, keyfile: paths.key, cacert: paths.ca } } : {}),
    etcd3,
    bootstrap: {
      dcs: {
        ttl: cfg.dcs.ttl,
        loop_wait: cfg.dcs.loopWait,
        retry_timeout: cfg.dcs.retryTimeout,
        maximum_lag_on_failover: 1048576,
        // true (one synchronous standby at a time), "quorum" (Patroni 4's quorum commit) or false.
        synchronous_mode: SYNCHRONOUS_MODE_VALUES[cfg.dcs.synchronousMode],
        synchronous_mode_strict: cfg.dcs.synchronousModeStrict,
        // A leader that loses etcd keeps its role while it still reaches every member over
        // their REST API (they cannot have promoted without etcd): a whole-etcd outage is then
        // no outage for clients. README: "etcd lost".
        failsafe_mode: cfg.dcs.failsafeMode,
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          parameters: { ...DEFAULT_PG_PARAMETERS },
        },
      },
      initdb: [
        { encoding: "UTF8" },
        { locale: "C.UTF-8" },
        "data-checksums",
        // The file initdb writes is replaced by Patroni's pg_hba before PostgreSQL first starts;
        // without these initdb would still write trust lines and warn about them.
        { "auth-local": "peer" },
        { "auth-host": "reject" },
        // Patroni wants each key-value option's value as a string.
        { "wal-segsize": String(cfg.walSegmentSizeMb) },
      ],
      // Patroni appends the superuser's local connection string: the script runs the file
      // there with psql, then deletes it (agent/bin/pgha-post-bootstrap).
      post_bootstrap: `${POST_BOOTSTRAP_COMMAND} ${bootstrapSqlPath(cfg.configFile)}`,
      ...(backup.bootstrap ?? {}),
    },
    postgresql: {
      listen: `0.0.0.0:${POSTGRES_PORT}`,
      connect_address: formatHostPort(addr.postgres),
      data_dir: cfg.dataDir,
      bin_dir: pgBinDir(cfg.pgMajor),
      pgpass: IMAGE_PATHS.pgpass,
      use_unix_socket: true,
      use_unix_socket_repl: true,
      authentication: {
        superuser: { username: cfg.superuser.username, password: cfg.superuser.password },
        replication: { username: cfg.replication.username, password: cfg.replication.password },
        rewind: { username: cfg.superuser.username, password: cfg.superuser.password },
      },
      // Patroni runs it after taking the leader lock and before promoting; non-zero = no promotion.
      pre_promote: PRE_PROMOTE_COMMAND,
      // Patroni runs it after the checkpoint and before it stops PostgreSQL (a switchover, a
      // restart, a shutdown): clients in start-up finish connecting first (agent/startup-drain.ts).
      before_stop: BEFORE_STOP_COMMAND,
      pg_hba: pgHba(cfg.replication.username),
      pg_ident: pgIdent(cfg.superuser.username, cfg.replication.username),
      parameters: {
        unix_socket_directories: IMAGE_PATHS.socketDir,
        // TLS offered to every client (libpq's sslmode=prefer takes it; verify-full checks the
        // name: the certificate names the router too); replication between members uses it.
        ...(tls ? { ssl: "on", ssl_cert_file: paths.cert, ssl_key_file: paths.key } : {}),
        ...backup.parameters,
      },
      ...(backup.recoveryConf ? { recovery_conf: { ...backup.recoveryConf } } : {}),
      create_replica_methods: [...backup.createReplicaMethods],
      ...backup.methodOptions,
    },
    watchdog: { mode: "off" },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A string literal (standard_conforming_strings, PostgreSQL's default since 9.1). */
export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/**
 * The admin user (POSTGRES_USERNAME) and what it may do, created when the
 * cluster is bootstrapped: what an application needs (log in, create databases, own what it
 * creates in `public`), and nothing that reaches the operating system. PostgreSQL 15 no longer lets every user create in
 * the public schema, so the admin is given it explicitly. A cluster restored
 * from a backup already has the role: it gets the password of this run.
 */
export function bootstrapSql(admin: { readonly username: string; readonly password: string }): string {
  const role = quoteIdent(admin.username);
  // No CREATEROLE: on PostgreSQL 15 it lets a role grant itself pg_read_server_files or
  // pg_execute_server_program, and from there read the node's secrets as the postgres user.
  const options = `LOGIN CREATEDB NOCREATEROLE NOSUPERUSER NOREPLICATION NOBYPASSRLS PASSWORD ${quoteLiteral(admin.password)}`;
  return [
    "-- Run by Patroni once, on the node that creates the cluster (post_bootstrap).",
    "DO $bootstrap$",
    "BEGIN",
    `  IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${quoteLiteral(admin.username)}) THEN`,
    `    ALTER ROLE ${role} WITH ${options};`,
    "  ELSE",
    `    CREATE ROLE ${role} WITH ${options};`,
    "  END IF;",
    "END",
    "$bootstrap$;",
    `GRANT CREATE, CONNECT, TEMPORARY ON DATABASE postgres TO ${role};`,
    `GRANT ALL ON SCHEMA public TO ${role};`,
    // A role restored from an older backup may hold these; an application needs none of them.
    `REVOKE pg_read_server_files, pg_write_server_files, pg_execute_server_program FROM ${role};`,
    "",
  ].join("\n");
}

/**
 * Every string value double-quoted: a password such as `=`, `<<`, `*x` or `!x` written plain
 * is another type, an alias, a tag or a merge key to Patroni's YAML 1.1 loader (the library
 * writes `<<` plain even when asked to quote by default, so each scalar is marked).
 */
function quotedYaml(config: PatroniConfig): string {
  // Without its merge tag: the 1.1 schema takes the string `<<` for a merge key and writes it plain.
  const doc = new Document(config, {
    version: "1.1",
    customTags: (tags) =>
      tags.filter((t) => t !== "merge" && (typeof t === "string" || t.tag !== "tag:yaml.org,2002:merge")),
  });
  visit(doc, {
    Pair(_key, pair) {
      if (isScalar(pair.value) && typeof pair.value.value === "string") pair.value.type = "QUOTE_DOUBLE";
    },
    Seq(_key, seq) {
      for (const item of seq.items) {
        if (isScalar(item) && typeof item.value === "string") item.type = "QUOTE_DOUBLE";
      }
    },
  });
  return doc.toString({ lineWidth: 0 });
}

/** YAML 1.1, as Patroni's PyYAML reads it: strings such as "on" and "off" stay quoted strings. */
export function toYaml(config: PatroniConfig): string {
  return (
    "# Rendered by the agent at every start from its environment; edit the environment, not this file.\n" +
    "# Settings under bootstrap.dcs apply when the cluster is created; change them later with\n" +
    "# `patronictl edit-config`.\n" +
    quotedYaml(config)
  );
}
