/**
 * What `./pgha up` and `./pgha down` run: scripts/stack-up.sh writes the env
 * file with random passwords (mode 0600), starts the stack, waits for a
 * routable primary and prints a psql URL that works from the host;
 * scripts/stack-down.sh stops it, keeping the data unless asked. `./pgha up`
 * and `./pgha down` pass their arguments on, and `./pgha up` prints the URL
 * alone on stdout (set-up speaks on stderr), so `psql "$(./pgha up)"` works.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { docker, ensureImages, imageOf, REPO_ROOT, uniquePrefix } from "../harness/docker.js";
import { freePort } from "../harness/ports.js";
import { run, waitFor } from "../harness/proc.js";

const project = uniquePrefix("e2e-scripts").slice(0, -1);
const dir = mkdtempSync(join(tmpdir(), `${project}-`));
const envFile = join(dir, "stack.env");
const noBuild = process.env["PGHA_E2E_NO_BUILD"] === "1";

function readEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(envFile, "utf8").split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

/** Runs a command of this checkout (`scripts/stack-up.sh`, `pgha`) with the test's env file. */
async function command(
  path: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"],
    HOME: process.env["HOME"],
    PGHA_ENV_FILE: envFile,
    ...(noBuild ? { PGHA_NO_BUILD: "1" } : {}),
  };
  return new Promise((resolve) => {
    execFile(
      join(REPO_ROOT, path),
      args,
      { env, cwd: REPO_ROOT, timeout: 15 * 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const script = (name: string, args: string[] = []) => command(join("scripts", name), args);
/** `./pgha up|down ARGS…`: the stack script with ARGS (`up` runs the set-up first, `down` needs only the engine). */
const pgha = (args: string[]) => command("pgha", args);

async function volumes(): Promise<string[]> {
  const out = await docker(["volume", "ls", "-q", "--filter", `label=com.docker.compose.project=${project}`]);
  return out.split("\n").filter(Boolean).sort();
}

describe("scripts/stack-up.sh and scripts/stack-down.sh", { timeout: 20 * 60_000 }, () => {
  let port = 0;
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    port = await freePort();
    // Only what a user might set; the script adds the rest. Images as the other tests use them.
    const lines = [
      `COMPOSE_PROJECT_NAME=${project}`,
      `PGHA_PORT=${port}`,
      `PGHA_REPLICA_PORT=${await freePort()}`,
      `PGHA_ADMIN_PORT=${await freePort()}`,
      `PGHA_PROMETHEUS_PORT=${await freePort()}`,
      `PGHA_ALERTMANAGER_PORT=${await freePort()}`,
      "PATRONI_TTL=20",
      "PATRONI_LOOP_WAIT=2",
      "PATRONI_RETRY_TIMEOUT=4",
      ...["agent", "etcd", "registrator", "router", "prometheus", "alertmanager"].map(
        (n) => `PGHA_${n.toUpperCase()}_IMAGE=${imageOf(n as "agent")}`,
      ),
    ];
    writeFileSync(envFile, lines.map((l) => `${l}\n`).join(""), { mode: 0o644 });
  });

  after(async () => {
    await script("stack-down.sh", ["--volumes"]);
    const left = await docker(["ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`]).catch(
      () => "",
    );
    if (left) await docker(["rm", "-f", "-v", ...left.split("\n")]).catch(() => undefined);
    for (const v of await volumes().catch(() => []))
      await docker(["volume", "rm", "-f", v]).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a host port that something else listens on, naming the setting", async () => {
    const squatter: Server = createServer();
    await new Promise<void>((r) => squatter.listen(port, "127.0.0.1", r));
    try {
      const r = await script("stack-up.sh");
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use; choose another with PGHA_PORT=`),
      );
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });

  it("writes random passwords into the env file, mode 0600, keeping what was there", () => {
    const env = readEnv();
    assert.equal(statSync(envFile).mode & 0o777, 0o600);
    const secrets = [
      "POSTGRES_PASSWORD",
      "REPLICATION_PASSWORD",
      "SUPERUSER_PASSWORD",
      "RESTAPI_PASSWORD",
    ].map((k) => env[k] ?? "");
    for (const s of secrets) assert.match(s, /^[A-Za-z0-9]{32}$/);
    assert.equal(new Set(secrets).size, 4, "four different passwords");
    assert.equal(env["POSTGRES_USERNAME"], "admin");
    assert.equal(env["COMPOSE_PROJECT_NAME"], project);
    assert.equal(env["PGHA_PORT"], String(port));
  });

  it("starts the stack and prints a psql URL that works from the host", async () => {
    const r = await script("stack-up.sh");
    assert.equal(r.code, 0, r.stderr);
    const url = r.stdout.trim();
    assert.equal(url, `postgresql://admin@127.0.0.1:${port}/postgres`);
    assert.match(r.stderr, /the stack is up/);
    const password = readEnv()["POSTGRES_PASSWORD"]!;
    const q = await run(
      "psql",
      [
        url,
        "-Atqc",
        "select current_user, pg_is_in_recovery(), split_part(current_setting('server_version'), '.', 1)",
      ],
      { env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: "10" } },
    );
    // The router's primary, on the images' PostgreSQL 17.
    assert.equal(q.stdout.trim(), "admin|f|17");
    // The leader ran initdb; initdb wrote no trust lines to warn about (Patroni's pg_hba rules).
    const ids = (await docker(["ps", "-q", "--filter", `label=com.docker.compose.project=${project}`]))
      .split("\n")
      .filter(Boolean);
    const logs = await Promise.all(
      ids.map(async (id) => {
        const l = await run("docker", ["logs", id]);
        return l.stdout + l.stderr;
      }),
    );
    assert.equal(logs.filter((l) => /Data page checksums are enabled/.test(l)).length, 1, "one initdb");
    for (const l of logs) assert.doesNotMatch(l, /enabling "trust" authentication/);
    await run(
      "psql",
      [url, "-qc", "create table kept (v text); insert into kept values ('survives down and up')"],
      {
        env: { ...process.env, PGPASSWORD: password },
      },
    );
  });

  it("made a private CA and certificates beside the env file: keys 0600, each owned by its service's account", () => {
    const tls = readEnv()["PGHA_TLS_DIR"]!;
    assert.equal(tls, join(dir, "tls"));
    const owners: Record<string, number> = { etcd: 0, agent: 0, router: 10002, registrator: 10001 };
    assert.equal(statSync(join(tls, "ca.key")).mode & 0o777, 0o600);
    for (const [part, uid] of Object.entries(owners)) {
      const key = statSync(join(tls, part, "tls.key"));
      assert.equal(key.mode & 0o777, 0o600, `${part}/tls.key`);
      assert.equal(key.uid, uid, `${part}/tls.key owner`);
      assert.equal(statSync(join(tls, part, "ca.crt")).mode & 0o777, 0o644);
    }
  });

  it("PostgreSQL speaks TLS through the router: verify-full passes on the router's names, fails on another name or CA", async () => {
    const tls = readEnv()["PGHA_TLS_DIR"]!;
    const password = readEnv()["POSTGRES_PASSWORD"]!;
    const env = { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: "10" };
    const sql =
      "select ssl, pg_is_in_recovery() from pg_stat_ssl join pg_stat_activity using (pid) where pid = pg_backend_pid()";
    for (const host of ["localhost", "127.0.0.1"]) {
      const conn = `host=${host} port=${port} user=admin dbname=postgres sslmode=verify-full sslrootcert=${tls}/ca.crt`;
      const q = await run("psql", [conn, "-Atc", sql], { env });
      assert.equal(q.stdout.trim(), "t|f", `TLS to the primary as ${host}`);
    }
    // A name the certificate does not carry (reached on the same address) is refused by the client.
    const wrongName = `host=pgha.invalid hostaddr=127.0.0.1 port=${port} user=admin dbname=postgres sslmode=verify-full sslrootcert=${tls}/ca.crt`;
    await assert.rejects(
      run("psql", [wrongName, "-Atc", "select 1"], { env }),
      /does not match host name|server certificate/,
    );
    // Another CA (a second ./pgha certs elsewhere) does not vouch for this stack.
    const other = join(dir, "other-ca");
    await run(join(REPO_ROOT, "scripts", "certs.sh"), ["--dir", other], {
      env: { PATH: process.env["PATH"] },
    });
    const wrongCa = `host=localhost port=${port} user=admin dbname=postgres sslmode=verify-full sslrootcert=${other}/ca.crt`;
    await assert.rejects(run("psql", [wrongCa, "-Atc", "select 1"], { env }), /certificate verify failed/);
  });

  it("etcd takes only clients with a certificate of the stack's CA", async () => {
    const tls = readEnv()["PGHA_TLS_DIR"]!;
    const other = join(dir, "other-ca");
    const etcdctl = (mounts: string[], args: string[]) =>
      run("docker", [
        "run",
        "--rm",
        "--network",
        `${project}_pgha`,
        ...mounts.flatMap((m) => ["-v", m]),
        "--entrypoint",
        "etcdctl",
        imageOf("etcd"),
        // Refusals end in a deadline: short ones keep the test short.
        "--dial-timeout=2s",
        "--command-timeout=3s",
        ...args,
        "get",
        "--prefix",
        "--keys-only",
        "/service/",
      ]);
    const ca = `${tls}/router:/tls:ro`;
    // With the router's client certificate: Patroni's keys.
    const ok = await etcdctl(
      [ca],
      ["--endpoints=https://etcd1:2379", "--cacert=/tls/ca.crt", "--cert=/tls/tls.crt", "--key=/tls/tls.key"],
    );
    assert.match(ok.stdout, /\/service\/pgha\/leader/);
    // TLS without a client certificate: refused in the handshake.
    await assert.rejects(
      etcdctl([ca], ["--endpoints=https://etcd1:2379", "--cacert=/tls/ca.crt"]),
      /certificate required|bad certificate|context deadline exceeded|handshake/,
    );
    // A client certificate from another CA: refused.
    await assert.rejects(
      etcdctl(
        [ca, `${other}/agent:/other:ro`],
        [
          "--endpoints=https://etcd1:2379",
          "--cacert=/tls/ca.crt",
          "--cert=/other/tls.crt",
          "--key=/other/tls.key",
        ],
      ),
      /bad certificate|unknown certificate authority|context deadline exceeded|handshake/,
    );
    // Plain http on the client port: no answer an etcd client can use.
    await assert.rejects(
      etcdctl([], ["--endpoints=http://etcd1:2379"]),
      /context deadline exceeded|EOF|malformed|connection/,
    );
    // Peers too: the peer port takes no client without a certificate.
    const peer = await run("docker", [
      "run",
      "--rm",
      "--network",
      `${project}_pgha`,
      "-v",
      ca,
      "--entrypoint",
      "sh",
      imageOf("agent"),
      "-c",
      'curl -sS --max-time 5 --cacert /tls/ca.crt https://etcd1:2380/members; echo " exit=$?"',
    ]);
    assert.match(peer.stdout + peer.stderr, /exit=(35|56|58)|alert|certificate required/);
  });

  it("every agent reports healthy over https, and Patroni logs no plain request on its TLS port", async () => {
    for (const n of [1, 2, 3]) {
      const name = `${project}-pg${n}`;
      await waitFor(
        `${name} healthy`,
        async () => (await docker(["inspect", "-f", "{{.State.Health.Status}}", name])).trim() === "healthy",
        { timeoutMs: 180_000, intervalMs: 2000 },
      );
      // docker's health checks ran (interval 10 s) at least once since the agent's Patroni serves https.
      const logs = await run("docker", ["logs", name]).then((r) => r.stdout + r.stderr);
      assert.doesNotMatch(logs, /HTTP_REQUEST|http request to an https server/i, `${name}'s log`);
    }
  });

  it("patronictl in a node switches over through Patroni's https REST API, and the router follows", async () => {
    const pg1 = `${project}-pg1`;
    const list = JSON.parse(await docker(["exec", pg1, "patronictl", "list", "-f", "json"])) as {
      Member: string;
      Role: string;
    }[];
    const leader = list.find((m) => m.Role === "Leader")!.Member;
    const candidate = list.find((m) => /sync|quorum/i.test(m.Role))!.Member;
    await docker([
      "exec",
      pg1,
      "patronictl",
      "switchover",
      "--leader",
      leader,
      "--candidate",
      candidate,
      "--force",
    ]);
    const password = readEnv()["POSTGRES_PASSWORD"]!;
    const tls = readEnv()["PGHA_TLS_DIR"]!;
    const conn = `host=localhost port=${port} user=admin dbname=postgres sslmode=verify-full sslrootcert=${tls}/ca.crt`;
    await waitFor(
      `the router to route to ${candidate}`,
      async () => {
        const q = await run("psql", [conn, "-Atc", "select inet_server_addr(), pg_is_in_recovery()"], {
          env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: "5" },
        }).catch(() => null);
        if (q === null || !q.stdout.trim().endsWith("|f")) return false;
        const ip = q.stdout
          .trim()
          .split("|")[0]!
          .replace(/\/\d+$/, "");
        const addrs = await docker([
          "inspect",
          "-f",
          "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
          `${project}-${candidate}`,
        ]);
        return addrs.split(" ").includes(ip);
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  });

  it("./pgha up passes its arguments on to stack-up.sh", async () => {
    const r = await pgha(["up", "--no-such-flag"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /stack-up: unknown argument --no-such-flag \(accepted: --monitoring, --no-build\)/,
    );
    assert.equal(r.stdout, "");
  });

  it("./pgha up again: set-up on stderr, the URL alone on stdout, passwords and stack kept", async () => {
    const before = readFileSync(envFile, "utf8");
    const r = await pgha(["up", "--no-build"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /pgha: setup done in/);
    assert.doesNotMatch(r.stderr, /build-images:/, "--no-build reached stack-up.sh");
    assert.equal(r.stdout, `postgresql://admin@127.0.0.1:${port}/postgres\n`);
    assert.equal(readFileSync(envFile, "utf8"), before);
  });

  it("stack-down keeps the data; up again serves it; --volumes removes it but the backups; --delete-backups those too", async () => {
    const down = await script("stack-down.sh");
    assert.equal(down.code, 0, down.stderr);
    assert.equal(await docker(["ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`]), "");
    assert.ok((await volumes()).length >= 4, "data volumes kept");
    const up = await script("stack-up.sh");
    assert.equal(up.code, 0, up.stderr);
    const q = await run("psql", [up.stdout.trim(), "-Atqc", "select v from kept"], {
      env: { ...process.env, PGPASSWORD: readEnv()["POSTGRES_PASSWORD"]!, PGCONNECT_TIMEOUT: "10" },
    });
    assert.equal(q.stdout.trim(), "survives down and up");
    const purge = await pgha(["down", "--volumes"]);
    assert.equal(purge.code, 0, purge.stderr);
    assert.equal(purge.stdout, "");
    // The backup repository survives --volumes unless it is named.
    assert.deepEqual(await volumes(), [`${project}_backups`], "only the backup repository is left");
    assert.match(purge.stderr, /backup repository .* kept/);
    const all = await pgha(["down", "--volumes", "--delete-backups"]);
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(await volumes(), []);
  });
});
