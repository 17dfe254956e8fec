/**
 * Escalation inside a node, played as an attacker would (issue: security review). On a real
 * agent container of the compose stack (one agent, backups on a POSIX repository):
 *
 *  - the application role, connected through the router with psql and with node-postgres,
 *    tries to grant itself the roles that reach the server's files and programs, and to read
 *    the node's secret files: every attempt fails;
 *  - the bootstrap file with the admin password is gone once the cluster exists;
 *  - the postgres account plants symlinks where root wrote files before (the old temporary
 *    names `<file>.tmp-<pid>` in /etc/patroni and /etc/pgbackrest) pointing at root's own
 *    files; after a restart of the container no root-owned file changed owner or mode.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { pgConfig } from "../harness/ack-writers.js";
import { ComposeStack } from "../harness/compose.js";
import { docker, ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

let stack: ComposeStack;

const SECRET_FILES = [
  "/etc/patroni/patroni.yml",
  "/etc/patroni/bootstrap/bootstrap.sql",
  "/etc/pgbackrest/pgbackrest.conf",
  "/var/lib/postgresql/.pgpass",
];

/** Root's files an escalation would go for: the agent's own code, node, the shadow file. */
const ROOT_FILES = ["/opt/pgha/dist/agent/main.js", "/usr/local/bin/node", "/etc/shadow", "/etc/passwd"];

const ATTACKS: [string, string][] = [
  ["grant itself pg_read_server_files", "GRANT pg_read_server_files TO admin"],
  ["grant itself pg_execute_server_program", "GRANT pg_execute_server_program TO admin"],
  ["grant itself pg_write_server_files", "GRANT pg_write_server_files TO admin"],
  ["create a superuser", "CREATE ROLE evil SUPERUSER LOGIN PASSWORD 'x'"],
  ["create any role", "CREATE ROLE helper"],
  ["run a program", "COPY (SELECT 1) TO PROGRAM 'id'"],
  ...SECRET_FILES.map((f): [string, string] => [`read ${f} with COPY`, `COPY pg_temp.t FROM '${f}'`]),
  ...SECRET_FILES.map((f): [string, string] => [
    `read ${f} with pg_read_file`,
    `SELECT pg_read_file('${f}')`,
  ]),
  ["read a file as a large object", "SELECT lo_import('/etc/patroni/patroni.yml')"],
];

/** Runs a command and answers its exit code and stderr, whatever the code. */
function attempt(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 30_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr: stderr.toString() }),
    );
  });
}

async function ownership(container: string): Promise<string> {
  return docker(["exec", container, "stat", "-c", "%u:%g %a %n", ...ROOT_FILES]);
}

describe("escalation inside a node: each attack fails", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    stack = await ComposeStack.up("escalation", {
      cli: "v2",
      services: ["etcd1", "etcd2", "etcd3", "registrator", "router-ports", "router", "pg1"],
      env: { BACKUP_POSIX_PATH: "/backup" },
    });
    await stack.waitReady({ replicas: 0 });
  });

  after(async () => {
    await stack?.destroy();
  });

  it("the application role through the router (node-postgres): no grant, no role, no file, no program", async () => {
    const c = new pg.Client(pgConfig(stack.pg()));
    await c.connect();
    try {
      await c.query("CREATE TEMP TABLE t (line text)");
      const got: string[] = [];
      for (const [what, sql] of ATTACKS) {
        const r = await c.query(sql).then(
          () => "succeeded",
          (err: Error & { code?: string }) => `failed: ${err.code} ${err.message}`,
        );
        if (!r.startsWith("failed: 42501")) got.push(`${what}: ${r}`);
      }
      assert.deepEqual(got, [], "every attempt fails with insufficient_privilege (42501)");
      const role = await c.query(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') AS files FROM pg_roles WHERE rolname = current_user",
      );
      assert.deepEqual(role.rows[0], {
        rolsuper: false,
        rolcreaterole: false,
        rolcreatedb: true,
        files: false,
      });
    } finally {
      await c.end();
    }
  });

  it("the same attacks with psql (libpq, sslmode=prefer) through the router", async () => {
    const p = stack.pg();
    const failed: string[] = [];
    for (const [what, sql] of ATTACKS.filter(([w]) => !w.includes("with COPY"))) {
      const r = await attempt(
        "psql",
        [
          "-X",
          "-v",
          "ON_ERROR_STOP=1",
          "-h",
          p.host,
          "-p",
          String(p.port),
          "-U",
          p.user,
          "-d",
          p.database,
          "-c",
          sql,
        ],
        { PGPASSWORD: p.password, PGSSLMODE: "prefer", PATH: process.env["PATH"] ?? "" },
      );
      if (
        r.code === 0 ||
        !/permission denied|must have admin option|must be superuser|only roles with/i.test(r.stderr)
      ) {
        failed.push(`${what}: exit ${r.code}: ${r.stderr.trim()}`);
      }
    }
    assert.deepEqual(failed, [], "psql prints a permission error for each");
  });

  it("the bootstrap file with the admin password is gone once the cluster exists", async () => {
    const pg1 = await stack.container("pg1");
    const r = await attempt("docker", ["exec", pg1, "test", "-e", "/etc/patroni/bootstrap/bootstrap.sql"]);
    assert.notEqual(r.code, 0, "bootstrap.sql does not exist");
    const ls = await docker(["exec", pg1, "stat", "-c", "%U:%G %a", "/etc/patroni", "/etc/pgbackrest"]);
    assert.deepEqual(ls.split("\n"), ["root:root 755", "root:root 755"], "root's configuration directories");
    const conf = await docker(["exec", pg1, "stat", "-c", "%U %a %F", "/etc/patroni/patroni.yml"]);
    assert.equal(conf, "postgres 600 regular file");
  });

  it("postgres plants symlinks where root writes; after a restart no root file changed", async () => {
    const pg1 = await stack.container("pg1");
    const before = await ownership(pg1);
    const plant = [
      "for i in $(seq 1 400); do",
      "  ln -s /opt/pgha/dist/agent/main.js /etc/patroni/patroni.yml.tmp-$i 2>/dev/null && echo planted patroni.yml.tmp-$i;",
      "  ln -s /etc/shadow /etc/pgbackrest/pgbackrest.conf.tmp-$i 2>/dev/null && echo planted pgbackrest.conf.tmp-$i;",
      "  ln -s /usr/local/bin/node /etc/patroni/bootstrap/bootstrap.sql.tmp-$i 2>/dev/null && echo planted bootstrap.sql.tmp-$i;",
      "done;",
      "ln -s /opt/pgha/dist/agent/main.js /etc/patroni/bootstrap/bootstrap.sql 2>/dev/null && echo planted bootstrap.sql;",
      "true",
    ].join("\n");
    // What postgres manages to plant: at most in its own bootstrap directory, never in root's.
    const planted = await docker(["exec", "-u", "postgres", pg1, "sh", "-c", plant]);
    assert.ok(
      !/patroni\.yml|pgbackrest\.conf/.test(planted),
      `nothing planted in root's directories:\n${planted}`,
    );
    await docker(["restart", "-t", "30", pg1], { timeoutMs: 90_000 });
    await waitFor("pg1 to lead again", async () => (await stack.leader().catch(() => null)) === "pg1", {
      timeoutMs: 120_000,
      intervalMs: 1000,
    });
    const afterRestart = await ownership(await stack.container("pg1"));
    assert.equal(afterRestart, before, "root's files keep their owner and mode");
    const one = await waitFor(
      "a query through the router",
      async () => {
        const c = new pg.Client(pgConfig(stack.pg()));
        try {
          await c.connect();
          return (await c.query("SELECT 1 AS one")).rows[0].one as number;
        } finally {
          await c.end().catch(() => undefined);
        }
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(one, 1);
  });
});
