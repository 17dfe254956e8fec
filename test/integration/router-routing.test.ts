/**
 * The router CLI in front of a real 3-node Patroni cluster: the primary port reaches
 * the leader, the replica port the replicas, the wire protocol passes through
 * (SSLRequest, CancelRequest, direct TLS), bad clients are closed and counted (and told
 * what PostgreSQL would tell them), and the admin endpoints tell what is routed where.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PatroniCluster } from "../harness/patroni.js";
import { run, waitFor } from "../harness/proc.js";
import { clientVia, RouterProcess, rawConnect, untilClosed, whoServes } from "../harness/router.js";

/** Sends `bytes` on a new connection to `port` and returns all that comes back before the close. */
async function exchange(port: number, bytes: Buffer): Promise<Buffer> {
  const s = await rawConnect(port);
  const closed = untilClosed(s, 10_000);
  s.write(bytes);
  return closed;
}

/** The fields of the ErrorResponse at the start of `b`, by their one-letter code. */
function errorFields(b: Buffer): Record<string, string> {
  assert.equal(String.fromCharCode(b[0]!), "E", `an ErrorResponse: ${b.toString("latin1")}`);
  const out: Record<string, string> = {};
  const end = 1 + b.readUInt32BE(1);
  let i = 5;
  while (i < end && b[i] !== 0) {
    const stop = b.indexOf(0, i + 1);
    assert.ok(stop > i && stop < end, `a NUL-terminated field: ${b.toString("latin1")}`);
    out[String.fromCharCode(b[i]!)] = b.toString("utf8", i + 1, stop);
    i = stop + 1;
  }
  return out;
}

describe("router: routing to a 3-node Patroni cluster", () => {
  let c: PatroniCluster;
  let r: RouterProcess;
  let leader: string;

  before(async () => {
    c = await PatroniCluster.start({ nodes: 3 });
    leader = (await c.leader())!;
    r = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      // One worker (under the supervisor): the balancing and the limits below are each
      // worker's own; test/integration/router-workers.test.ts covers several.
      args: ["--startup-timeout", "1s", "--log-level", "debug", "--workers", "1"],
    });
    await r.waitReady();
  });
  after(async () => {
    await r?.destroy();
    await c?.destroy();
  });

  it("writes through the primary port land on the leader", async () => {
    const client = clientVia(c, r.port);
    await client.connect();
    await client.query("CREATE TABLE IF NOT EXISTS routed (id int primary key, at text)");
    const res = await client.query(
      "INSERT INTO routed VALUES (1, 'x') RETURNING inet_server_port() AS port, pg_is_in_recovery() AS standby",
    );
    await client.end();
    assert.equal(Number(res.rows[0].port), c.node(leader).pgPort);
    assert.equal(res.rows[0].standby, false);
    const direct = clientVia(c, c.node(leader).pgPort);
    await direct.connect();
    const rows = await direct.query("SELECT count(*)::int AS n FROM routed WHERE id = 1");
    await direct.end();
    assert.equal(rows.rows[0].n, 1);
  });

  it("replica port reads come from the replicas, spread over both", async () => {
    const seen = new Set<string>();
    await waitFor(
      "both replicas to serve the replica port",
      async () => {
        const w = await whoServes(c, r.replicaPort!);
        assert.equal(w.standby, true, `${w.member} is a standby`);
        assert.notEqual(w.member, leader);
        seen.add(w.member);
        return seen.size === 2;
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    );
  });

  it("fewest connections first: an open session on one replica sends the next client to the other", async () => {
    const held = clientVia(c, r.replicaPort!);
    await held.connect();
    try {
      const first = Number((await held.query("SELECT inet_server_port() AS p")).rows[0].p);
      for (let i = 0; i < 3; i++) {
        const w = await whoServes(c, r.replicaPort!);
        assert.notEqual(c.node(w.member).pgPort, first);
      }
    } finally {
      await held.end();
    }
  });

  it("an SSLRequest passes through: the server's 'N' reaches libpq, which goes on in plaintext", async () => {
    const out = await run(
      "psql",
      [`host=127.0.0.1 port=${r.port} user=postgres dbname=postgres sslmode=prefer`, "-tAc", "SHOW port"],
      { env: { ...process.env, PGPASSWORD: c.node(leader).pg().password, PGCONNECT_TIMEOUT: "30" } },
    );
    assert.equal(Number(out.stdout.trim()), c.node(leader).pgPort);
    const strict = await run(
      "psql",
      [`host=127.0.0.1 port=${r.port} user=postgres dbname=postgres sslmode=require`, "-tAc", "SELECT 1"],
      { env: { ...process.env, PGPASSWORD: "x" } },
    ).then(
      () => "connected",
      (err: Error) => err.message,
    );
    assert.match(strict, /server does not support SSL/);
  });

  it("a startup of protocol 2.0 or 4.0 gets the error PostgreSQL itself sends", async () => {
    const v2 = Buffer.alloc(296); // protocol 2's fixed-size startup packet
    v2.writeUInt32BE(296, 0);
    v2.writeUInt32BE(0x20000, 4);
    v2.write("postgres", 8 + 64, "latin1");
    // 2.0: in protocol 2's format, which a client of that protocol reads; the same bytes.
    const direct2 = await exchange(c.node(leader).pgPort, v2);
    assert.equal(
      direct2.toString("latin1"),
      "EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0",
    );
    assert.deepEqual(await exchange(r.port, v2), direct2);
    // 4.0: a v3 ErrorResponse, SQLSTATE 0A000 (PostgreSQL adds its source file and line).
    const v4body = Buffer.from("\0\0\0\0user\0postgres\0\0", "latin1");
    v4body.writeUInt32BE(0x40000, 0);
    const v4 = Buffer.concat([Buffer.alloc(4), v4body]);
    v4.writeUInt32BE(v4.length, 0);
    const direct4 = errorFields(await exchange(c.node(leader).pgPort, v4));
    const routed4 = errorFields(await exchange(r.port, v4));
    assert.equal(direct4.C, "0A000");
    assert.deepEqual(
      [routed4.S, routed4.V, routed4.C, routed4.M],
      [direct4.S, direct4.V, direct4.C, direct4.M],
    );
    assert.equal(routed4.M, "unsupported frontend protocol 4.0: server supports 3.0 to 3.0");
  });

  it("direct TLS: a first TLS record (0x16) is forwarded to PostgreSQL, which answers it as it does directly", async () => {
    // PostgreSQL 15 has no direct TLS: it reads the record header as a startup length, logs
    // "invalid length of startup packet" and closes. Through the router it must see the same bytes.
    const body = Buffer.from(Array.from({ length: 200 }, (_, i) => i & 0xff));
    const hello = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, body.length]), body]);
    const node = c.node(leader);
    const logged = () => node.tail(1_000_000).split("invalid length of startup packet").length - 1;
    const badBefore = await r.metric("router_clients_closed_total", { outcome: "bad_startup" });
    const direct = await exchange(node.pgPort, hello);
    await waitFor("PostgreSQL to log the direct attempt", () => logged() >= 1);
    const before = logged();
    const routed = await exchange(r.port, hello);
    assert.deepEqual(routed, direct, "the same answer (none) through the router");
    await waitFor("PostgreSQL to log the routed attempt too", () => logged() === before + 1);
    assert.equal(await r.metric("router_clients_closed_total", { outcome: "bad_startup" }), badBefore);
  });

  it("a CancelRequest reaches the server that owns the session", async () => {
    const victim = clientVia(c, r.port);
    await victim.connect();
    const v = victim as unknown as { processID: number; secretKey: number };
    const sleeping = victim.query("SELECT pg_sleep(60)").then(
      () => "finished",
      (err: { code?: string }) => err.code,
    );
    await new Promise((res) => setTimeout(res, 300));
    const packet = Buffer.alloc(16);
    packet.writeUInt32BE(16, 0);
    packet.writeUInt32BE(80877102, 4);
    packet.writeInt32BE(v.processID, 8);
    packet.writeInt32BE(v.secretKey, 12);
    const s = await rawConnect(r.port);
    s.write(packet);
    await untilClosed(s);
    const t0 = Date.now();
    assert.equal(await sleeping, "57014", "query_canceled");
    assert.ok(Date.now() - t0 < 20_000);
    await victim.end();
  });

  it("garbage bytes from a client close that client only, and are counted", async () => {
    const before = await r.metric("router_clients_closed_total", { outcome: "bad_startup" });
    for (const junk of [Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Buffer.alloc(64, 0xff)]) {
      const s = await rawConnect(r.port);
      s.write(junk);
      await untilClosed(s, 10_000);
    }
    const after = await r.metric("router_clients_closed_total", { outcome: "bad_startup" });
    assert.equal(after - before, 2);
    assert.equal((await whoServes(c, r.port)).member, leader, "still routing");
  });

  it("a client that connects and never speaks is closed after --startup-timeout, and counted", async () => {
    const s = await rawConnect(r.port);
    const t0 = Date.now();
    await untilClosed(s, 10_000);
    assert.ok(Date.now() - t0 >= 900, "closed by the startup timeout");
    assert.ok((await r.metric("router_clients_closed_total", { outcome: "startup_timeout" })) >= 1);
  });

  it("/routes shows members, roles, lag and the routed primary, without credentials", async () => {
    const res = await r.get("/routes");
    assert.equal(res.status, 200);
    assert.ok(!/harness-superuser-pw|harness-replication-pw|password/i.test(res.text), "no credential");
    const view = await r.route(c.scope);
    assert.equal(view.leader, leader);
    assert.equal(view.primary.action, "route");
    assert.equal(view.primary.target, leader);
    assert.deepEqual(view.members.map((m) => m.name).sort(), ["pg1", "pg2", "pg3"]);
    const roles = Object.fromEntries(view.members.map((m) => [m.name, m.role]));
    assert.equal(roles[leader], "primary");
    assert.equal(view.members.filter((m) => m.role === "replica").length, 2);
    for (const m of view.members) assert.equal(typeof m.lagBytes, "number");
  });

  it("the status page at / shows the leader and where both ports route, from the supervisor and with --workers 0", async () => {
    const single = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      args: ["--workers", "0"],
    });
    try {
      await single.waitReady();
      for (const [label, router] of [
        ["supervisor", r],
        ["--workers 0", single],
      ] as const) {
        const page = await fetch(`http://127.0.0.1:${router.adminPort}/`, {
          signal: AbortSignal.timeout(5000),
        });
        const html = await page.text();
        assert.equal(page.status, 200, label);
        assert.match(page.headers.get("content-type") ?? "", /^text\/html/, label);
        assert.match(
          page.headers.get("content-security-policy") ?? "",
          /default-src 'none'; script-src 'self'/,
        );
        assert.ok(
          html.includes(`<strong data-leader="${leader}">${leader}</strong>`),
          `${label}: the leader`,
        );
        assert.ok(
          html.includes(`<td data-routed="${leader}">${leader} (`),
          `${label}: the primary port routes to it`,
        );
        assert.match(html, /<tr data-port="replica">/, label);
        assert.match(html, /first primary /, `${label}: the first decision`);
        assert.ok(!/harness-superuser-pw|harness-replication-pw/.test(html), "no credential");
        const json = (await router.get("/status.json")).body as {
          time: number;
          routes: { leader: string }[];
        };
        assert.equal(json.routes[0]?.leader, leader, label);
        for (const asset of ["status-client.js", "status-view.js", "status.css"]) {
          assert.equal((await router.get(`/assets/${asset}`)).status, 200, `${label}: ${asset}`);
        }
      }
    } finally {
      await single.destroy();
    }
  });

  it("/readyz is 200 with a routable primary; /healthz answers; /metrics has the router's series", async () => {
    assert.equal((await r.get("/readyz")).status, 200);
    assert.equal((await r.get("/healthz")).status, 200);
    const { text } = await r.get("/metrics");
    for (const name of [
      "router_connections_active",
      "router_connections_total",
      "router_held_clients",
      "router_hold_wait_seconds",
      "router_upstream_retries_total",
      "router_primary_changes_total",
      "router_switch_seconds",
      "router_bytes_total",
      "router_rest_check_seconds",
      "router_rest_checks_total",
      "router_etcd_watch_up",
      "router_primary_routable",
    ]) {
      assert.ok(text.includes(`# TYPE ${name} `), `${name} exported`);
    }
    assert.equal(await r.metric("router_etcd_watch_up", { watch: c.scope }), 1);
    assert.ok((await r.metric("router_bytes_total", { direction: "out" })) > 0);
    assert.ok((await r.metric("router_connections_total", { role: "primary", backend: leader })) > 0);
  });

  it("--max-connections: the client past the limit gets 'too many connections', the others work", async () => {
    const small = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      replica: false,
      args: ["--max-connections", "2", "--workers", "1"],
    });
    try {
      await small.waitReady();
      const a = clientVia(c, small.port);
      const b = clientVia(c, small.port);
      await a.connect();
      await b.connect();
      const third = clientVia(c, small.port);
      await assert.rejects(third.connect(), /too many connections/);
      assert.equal((await a.query("SELECT 1 AS one")).rows[0].one, 1);
      await a.end();
      await b.end();
      assert.equal(await small.metric("router_clients_refused_total", { reason: "max_connections" }), 1);
    } finally {
      await small.destroy();
    }
  });

  it("--idle-timeout closes a session with no traffic", async () => {
    const idle = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      replica: false,
      args: ["--idle-timeout", "1s"],
    });
    try {
      await idle.waitReady();
      const a = clientVia(c, idle.port);
      const ended = new Promise<void>((resolve) => a.once("end", () => resolve()));
      a.on("error", () => undefined);
      await a.connect();
      await a.query("SELECT 1");
      await ended;
      assert.ok((await idle.metric("router_clients_closed_total", { outcome: "idle_timeout" })) >= 1);
    } finally {
      await idle.destroy();
    }
  });

  it("SIGTERM: stops listening, lets sessions finish, exits 0", async () => {
    const r2 = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      replica: false,
      args: ["--drain-timeout", "2s"],
    });
    await r2.waitReady();
    const a = clientVia(c, r2.port);
    a.on("error", () => undefined);
    await a.connect();
    const code = await r2.stop("SIGTERM");
    assert.equal(code, 0);
    assert.match(r2.tail(10), /drain finished/);
    await assert.rejects(rawConnect(r2.port), /ECONNREFUSED/);
    await r2.destroy();
  });
});
