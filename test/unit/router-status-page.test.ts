/**
 * The router's status page (router/status-view.ts, router/status-page.ts): rendered on the
 * server from the /routes view, it shows each cluster's members (role, state, timeline,
 * lag, REST check, sessions), where both ports route and why, held clients, and the last
 * decisions ("switchover pg1 → pg2, 1.2 s, 14 clients held, 0 failed"); everything it
 * shows is escaped, secrets are redacted, and it loads nothing but its own assets under
 * a strict Content-Security-Policy. A malformed view renders, it does not throw.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { renderStatusPage, STATUS_CSP, statusRoutes } from "../../router/status-page.js";
import { decisionText, escapeHtml, statusTree, toHtml } from "../../router/status-view.js";

const T = Date.UTC(2026, 11, 3, 7, 15, 47, 300);

const view = {
  time: T,
  routes: [
    {
      scope: "pgha",
      etcd: { connected: true, revision: 118 },
      leader: "pg2",
      primary: {
        action: "route",
        target: "pg2",
        address: "10.0.0.12:5432",
        reason: "pg2 holds the leader key and answers /primary",
        sessions: 12,
      },
      replicas: {
        eligible: [{ name: "pg1", address: "10.0.0.11:5432", sessions: 3 }],
        excluded: [
          { name: "pg2", reason: "is the leader" },
          { name: "pg3", reason: "lags past --max-lag" },
        ],
        reason: "1 of 3 members eligible",
        fallback: "primary",
      },
      failover: null,
      members: [
        {
          name: "pg1",
          role: "replica",
          state: "running",
          address: "10.0.0.11:5432",
          timeline: 3,
          lagBytes: 0,
          rest: { replica: { status: 200, failures: 0, at: T - 400, role: "replica" } },
        },
        {
          name: "pg2",
          role: "primary",
          state: "running",
          address: "10.0.0.12:5432",
          timeline: 3,
          lagBytes: 0,
          rest: { primary: { status: 200, failures: 0, at: T - 1200, role: "primary" } },
        },
        {
          name: "pg3",
          role: "replica",
          state: "running",
          address: "10.0.0.13:5432",
          timeline: 3,
          lagBytes: 41943040,
          rest: { replica: { status: null, failures: 2, at: T - 2000 } },
        },
      ],
      listen: "0.0.0.0:5432",
      replicaListen: "0.0.0.0:5433",
      held: { primary: 0, replica: 0 },
      clients: { primary: 12, replica: 3 },
      decisions: [
        {
          at: T - 60_000,
          action: "route",
          target: "pg2",
          reason: "pg2 holds the leader key and answers /primary",
          switch: {
            kind: "switchover",
            from: "pg1",
            to: "pg2",
            ms: 1200,
            held: 14,
            released: 14,
            failed: 0,
            gone: 0,
            waitMsMax: 1150,
          },
        },
        { at: T - 61_200, action: "pause", target: "pg1", reason: "a switchover is announced" },
      ],
    },
  ],
  clients: 15,
  maxConnections: 9000,
  workers: [
    { worker: 0, pid: 10, clients: 8 },
    { worker: 1, pid: 11, clients: 7 },
  ],
};

describe("the status page", () => {
  const html = toHtml(statusTree(view));

  it("shows the leader, each member's role, state, timeline, lag and REST check, and its sessions", () => {
    assert.match(html, /<strong data-leader="pg2">pg2<\/strong>/);
    assert.match(html, /<tr data-member="pg2" data-role="leader" class="leader">/);
    assert.match(html, /<td>\/primary 200 primary, 1\.2 s ago<\/td><td class="num">12 primary<\/td>/);
    assert.match(html, /<td class="num">40\.0 MB<\/td><td>\/replica no answer \(2×\), 2\.0 s ago<\/td>/);
    assert.match(html, /data-member="pg1".*<td class="num">3 replica<\/td>/);
    assert.match(html, /<td>running<\/td><td class="num">3<\/td>/);
  });

  it("shows where both ports route and why, and the clients held now", () => {
    assert.match(
      html,
      /<tr data-port="primary"><td>primary 0\.0\.0\.0:5432<\/td><td data-routed="pg2">pg2 \(10\.0\.0\.12:5432\)<\/td><td>pg2 holds the leader key and answers \/primary<\/td><td class="num">0<\/td><td class="num">12<\/td><\/tr>/,
    );
    assert.match(
      html,
      /pg1 \(10\.0\.0\.11:5432\)<\/td><td>1 of 3 members eligible; pg2 is the leader; pg3 lags past --max-lag/,
    );
  });

  it("shows the last decisions with their times", () => {
    assert.match(
      html,
      /<time datetime="2026-12-03T07:14:47\.300Z">07:14:47\.3 UTC<\/time> <span class="what">switchover pg1 → pg2, 1\.2 s, 14 clients held, 0 failed, longest wait 1\.1 s<\/span>/,
    );
    assert.match(
      html,
      /07:14:46\.1 UTC<\/time> <span class="what">pause pg1: new clients held<\/span><span class="why">a switchover is announced/,
    );
    assert.match(html, /updated 07:15:47\.3 UTC · 15 client connections open .* · 2 workers/);
  });

  it("decision texts", () => {
    const sw = (kind: string, extra = {}) => ({
      action: "route",
      target: "pg2",
      switch: {
        kind,
        from: "pg1",
        to: "pg2",
        ms: 9300,
        held: 1,
        released: 0,
        failed: 1,
        gone: 0,
        waitMsMax: 9000,
        ...extra,
      },
    });
    assert.equal(
      decisionText(sw("failover")),
      "failover pg1 → pg2, 9.3 s, 1 client held, 1 failed, longest wait 9.0 s",
    );
    assert.equal(
      decisionText(sw("first", { held: 0 })),
      "first primary pg2, after 9.3 s, 0 clients held, 1 failed",
    );
    assert.equal(
      decisionText(sw("resumed", { ms: 12_400, held: 0, failed: 0 })),
      "pg2 routed again after 12 s, 0 clients held, 0 failed",
    );
    assert.equal(decisionText({ action: "none", target: null }), "no primary: new clients held");
    assert.equal(decisionText({ action: "route", target: "pg1" }), "route to pg1");
  });

  it("escapes everything it shows, in text and in attributes", () => {
    const evil = `<img src=x onerror="alert(1)">'&`;
    const bad = structuredClone(view);
    const r = bad.routes[0]!;
    r.scope = evil;
    r.leader = evil;
    r.members[0]!.name = evil;
    r.members.push({ name: `"><script>alert(2)</script>`, invalid: `<b>bad JSON</b>` } as never);
    r.decisions[1]!.reason = evil;
    const out = toHtml(statusTree(bad));
    assert.doesNotMatch(out, /<img|<script|<b>/);
    assert.ok(out.includes(escapeHtml(evil)));
    assert.match(out, /data-leader="&lt;img src=x onerror=&quot;alert\(1\)&quot;&gt;&#39;&amp;"/);
    assert.match(out, /invalid record: &lt;b&gt;bad JSON&lt;\/b&gt;/);
  });

  it("renders a malformed view without throwing", () => {
    for (const v of [
      null,
      7,
      "x",
      { routes: "no" },
      { routes: [null, 3, { members: [null, 5], decisions: {} }] },
    ]) {
      assert.match(toHtml(statusTree(v)), /^<div id="content">/);
    }
  });

  it("the whole page: server-rendered content, its own script and style only, secrets redacted", async () => {
    const secret = structuredClone(view);
    (secret.routes[0]!.members[0] as Record<string, unknown>)["address"] =
      "postgres://admin:hunter2@10.0.0.11:5432";
    const page = renderStatusPage(secret);
    assert.doesNotMatch(page, /hunter2/);
    assert.match(page, /<main id="status"><div id="content">/);
    assert.match(page, /<script type="module" src="assets\/status-client\.js"><\/script>/);
    assert.match(page, /<noscript><meta http-equiv="refresh" content="5"><\/noscript>/);
    for (const [, url] of page.matchAll(/(?:src|href)="([^"]+)"/g)) assert.match(url!, /^assets\//, url);
    assert.match(STATUS_CSP, /default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'/);
    assert.doesNotMatch(STATUS_CSP, /unsafe/);

    const routes = statusRoutes(() => view);
    const root = await routes.pages["/"]!({} as never);
    assert.equal(root.contentType, "text/html; charset=utf-8");
    assert.equal(root.headers?.["content-security-policy"], STATUS_CSP);
    const client = await routes.pages["/assets/status-client.js"]!({} as never);
    assert.match(String(client.body), /from "\.\/status-view\.js"/);
    assert.doesNotMatch(String(client.body), /innerHTML|sourceMappingURL/);
    const renderer = await routes.pages["/assets/status-view.js"]!({} as never);
    assert.doesNotMatch(
      String(renderer.body),
      /^import |innerHTML/m,
      "the renderer imports nothing at run time",
    );
    const json = (await routes.json["/status.json"]!({} as never)) as { time: number; routes: unknown[] };
    assert.ok(json.time > 0 && json.routes.length === 1);
  });
});
