/**
 * The router's status page in a real browser (headless Chromium from Debian, driven by
 * playwright-core) on the compose stack: the page loads from the admin port with no
 * error, shows the leader, where both ports route and every member; after a switchover
 * (with clients connecting meanwhile, so that some are held) the page, kept open, shows
 * the new leader within seconds by itself, and the switchover among its last decisions
 * with the clients it held. The server renders the same state without JavaScript. A
 * member record whose name is HTML shows as text and runs nothing.
 *
 * A screenshot is taken on every run (into the test's directory); PGHA_UPDATE_SCREENSHOT=1
 * writes it to docs/status-page.png, the one the README shows.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { type Browser, openBrowser } from "../harness/browser.js";
import { type Agent, ComposeStack } from "../harness/compose.js";
import { ensureImages, REPO_ROOT } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const dir = mkdtempSync(join(tmpdir(), "status-page-"));

describe("the router's status page in Chromium", { timeout: 15 * 60_000 }, () => {
  let stack: ComposeStack;
  let browser: Browser;
  let leader: Agent;

  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    stack = await ComposeStack.up("status-page", { cli: "v2" });
    leader = await stack.waitReady();
    browser = await openBrowser();
  });

  after(async () => {
    await browser?.close();
    await stack?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const page = () => browser.page;
  const shownLeader = () => page().locator("[data-leader]").getAttribute("data-leader", { timeout: 2000 });

  it("loads with no error and shows the leader, both ports and every member; a screenshot", async () => {
    await page().goto(`${stack.adminUrl}/`, { waitUntil: "load" });
    // The page's script takes over from the server's rendering on its first poll.
    await waitFor(
      "the page's script to poll",
      async () => (await page().locator("#live").textContent()) === "live",
      {
        timeoutMs: 15_000,
        intervalMs: 200,
      },
    );
    assert.equal(await shownLeader(), leader);
    assert.equal(await page().locator(`tr[data-member="${leader}"][data-role="leader"]`).count(), 1);
    assert.equal(await page().locator("tr[data-member]").count(), 3);
    assert.equal(
      await page().locator('tr[data-port="primary"] td[data-routed]').getAttribute("data-routed"),
      leader,
    );
    assert.equal(await page().locator('tr[data-port="replica"]').count(), 1);
    assert.match((await page().locator("ol.decisions").textContent()) ?? "", /first primary/);
    const shot = join(dir, "status-page-before.png");
    await page().screenshot({ path: shot, fullPage: true });
    assert.deepEqual(readFileSync(shot).subarray(0, 8), PNG);
    assert.deepEqual(browser.errors, []);
  });

  it("without JavaScript: the server's own rendering shows the leader, under a strict CSP", async () => {
    const res = await fetch(`${stack.adminUrl}/`, { signal: AbortSignal.timeout(5000) });
    const html = await res.text();
    assert.equal(res.status, 200);
    assert.ok(html.includes(`<strong data-leader="${leader}">${leader}</strong>`), html);
    assert.match(html, /<noscript><meta http-equiv="refresh" content="5"><\/noscript>/);
    assert.match(res.headers.get("content-security-policy") ?? "", /^default-src 'none'; script-src 'self';/);
  });

  it("after a switchover, the open page shows the new leader within seconds, and the switchover with its held clients", async () => {
    const candidate = (await stack.members()).find((m) => m.role === "sync_standby")!.name as Agent;
    // Clients connecting through the router during the switchover: some are held, none fails.
    let connecting = true;
    let failed = 0;
    const loop = async () => {
      while (connecting) {
        const c = new pg.Client({ ...stack.pg(), connectionTimeoutMillis: 30_000 });
        // The old primary's shutdown may end a session between connect and query: node-postgres
        // then emits the server's FATAL as an 'error' event, which must not end the test.
        c.on("error", () => undefined);
        try {
          await c.connect();
        } catch {
          failed++; // a connection the router should have held, not failed
          continue;
        }
        try {
          await c.query("SELECT 1"); // a session the old primary's shutdown may end
        } catch {
        } finally {
          await c.end().catch(() => undefined);
        }
        await new Promise((r) => setTimeout(r, 30));
      }
    };
    const clients = Promise.all(Array.from({ length: 6 }, loop));
    let done: number;
    try {
      const r = await stack.restPost(leader, "/switchover", { leader, candidate });
      assert.equal(r.status, 200, r.text);
      done = Date.now();
      await waitFor("the page to show the new leader", async () => (await shownLeader()) === candidate, {
        timeoutMs: 10_000,
        intervalMs: 100,
      });
    } finally {
      connecting = false;
      await clients;
    }
    const seconds = (Date.now() - done) / 1000;
    console.log(
      `the page showed ${candidate} as leader ${seconds.toFixed(1)} s after Patroni's switchover answered`,
    );
    assert.equal(await page().locator(`tr[data-member="${candidate}"][data-role="leader"]`).count(), 1);
    const line = await waitFor(
      "the switchover among the last decisions",
      async () => {
        const t =
          (await page()
            .locator("li.switch.switchover .what")
            .textContent({ timeout: 1000 })
            .catch(() => null)) ?? "";
        return t.includes(`${leader} → ${candidate}`) ? t : null;
      },
      { timeoutMs: 10_000, intervalMs: 200 },
    );
    console.log(`decision shown: ${line}`);
    assert.match(
      line,
      new RegExp(`^switchover ${leader} → ${candidate}, [0-9.]+ s, \\d+ clients? held, 0 failed`),
    );
    assert.equal(failed, 0, "no client failed to connect during the switchover");
    // The screenshot once the old leader follows the new one again.
    await stack.waitReady();
    await waitFor(
      "the page to show every member running, the new leader as primary",
      async () => {
        const states = await page().evaluate<string[]>(
          `[...document.querySelectorAll("tr[data-member] td:nth-child(3)")].map((td) => td.textContent)`,
        );
        const role = await page().locator(`tr[data-member="${candidate}"] td:nth-child(2)`).textContent();
        return states.length === 3 && states.every((s) => s === "running") && role === "primary";
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const shot = join(dir, "status-page.png");
    await page().screenshot({ path: shot, fullPage: true });
    assert.deepEqual(readFileSync(shot).subarray(0, 8), PNG);
    if (process.env["PGHA_UPDATE_SCREENSHOT"] === "1") {
      mkdirSync(join(REPO_ROOT, "docs"), { recursive: true });
      copyFileSync(shot, join(REPO_ROOT, "docs", "status-page.png"));
    }
    assert.deepEqual(browser.errors, []);
    leader = candidate;
  });

  it("a member record named with HTML shows as text and runs nothing", async () => {
    const name = `<img src=x onerror="document.title='injected'">`;
    const key = `/service/${stack.project}/members/${name}`;
    await stack.exec("etcd1", ["etcdctl", "put", key, "not json"]);
    try {
      await waitFor(
        "the page to show the record",
        async () => (await page().locator("tr.invalid").count()) === 1,
        { timeoutMs: 10_000, intervalMs: 200 },
      );
      assert.equal(await page().locator("tr.invalid td").first().textContent(), name);
      assert.equal(await page().locator("img").count(), 0);
      await page().waitForTimeout(1500);
      assert.notEqual(await page().title(), "injected");
      assert.deepEqual(browser.errors, []);
    } finally {
      await stack.exec("etcd1", ["etcdctl", "del", key]);
    }
  });
});
