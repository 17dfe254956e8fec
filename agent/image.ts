/**
 * The agent image's fixed facts: the paths agent/Dockerfile installs and the
 * ports Patroni listens on inside the container. Nothing here is configurable;
 * options (agent/options.ts) change everything that is. Read by the rendered
 * patroni.yml (patroni-config.ts), the supervisor, the promotion check, and the
 * backup package (backup/), which takes these and nothing else from the agent.
 */

/** PostgreSQL and Patroni's REST API inside the container (published ports are discovered). */
export const POSTGRES_PORT = 5432;
export const RESTAPI_PORT = 8008;

/**
 * This node's own Patroni REST API, as the agent and the backup commands reach it: https when
 * it speaks TLS (every member certificate names 127.0.0.1).
 */
export function localRestApiUrl(tls: boolean): string {
  return `${tls ? "https" : "http"}://127.0.0.1:${RESTAPI_PORT}`;
}

/**
 * The environment name under which the image states its PostgreSQL major version. agent/Dockerfile
 * chooses the major once, in its PG_MAJOR build argument, installs that version and sets
 * `ENV PG_MAJOR`; the agent reads it (options.ts) for the binaries' directory and for the data
 * directory's version check (data-dir.ts). Nothing else names the version.
 */
export const PG_MAJOR_ENV = "PG_MAJOR";

/** Debian's place for a major version's server binaries (initdb, pg_ctl, pg_controldata, ...). */
export function pgBinDir(major: number): string {
  return `/usr/lib/postgresql/${major}/bin`;
}

/** Fixed places inside the image. */
export const IMAGE_PATHS = Object.freeze({
  socketDir: "/var/run/postgresql",
  /** Patroni writes the replication credentials here (mode 0600) for pg_basebackup and pg_rewind. */
  pgpass: "/var/lib/postgresql/.pgpass.patroni",
});

/** Where the agent answers Patroni's pre_promote hook; agent/bin/pgha-pre-promote names the same path. */
export const AGENT_SOCKET = "/run/pgha/agent.sock";

/** agent/bin/pgha-pre-promote: asks the agent whether the stop fence lets this node promote. */
export const PRE_PROMOTE_COMMAND = "pgha-pre-promote";

/** agent/bin/pgha-before-stop: waits until the agent says the clients in start-up have finished it. */
export const BEFORE_STOP_COMMAND = "pgha-before-stop";

/** agent/bin/pgha-post-bootstrap: runs the bootstrap SQL file as postgres, then deletes it. */
export const POST_BOOTSTRAP_COMMAND = "pgha-post-bootstrap";

/** agent/bin/pgha-patroni: Patroni's own entry point with Nagle off on its etcd connections. */
export const PATRONI_LAUNCHER = "pgha-patroni";

/** pgBackRest's places in the image (agent/Dockerfile creates the directories). */
export const PGBACKREST_PATHS = Object.freeze({
  conf: "/etc/pgbackrest/pgbackrest.conf",
  /** What the operator commands and Patroni's hooks need to know (no secrets). */
  jobFile: "/etc/pgbackrest/agent.json",
  spool: "/var/spool/pgbackrest",
  log: "/var/log/pgbackrest",
  /** agent/bin/pgha-backup: the command Patroni runs to create a replica or restore a cluster. */
  cli: "/usr/local/bin/pgha-backup",
});
