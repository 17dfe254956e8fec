/**
 * Alerting in the compose stack's `monitoring` profile, end to end: Prometheus knows the
 * stack's Alertmanager; when the leader's container is killed, the failover alert
 * (PgHaRouterPrimaryChanged: the router's primary changed) fires, Alertmanager's API
 * lists it, and a webhook receiver run by this test (on this host's address on Docker's
 * bridge, which the Alertmanager container reaches) receives it. ALERTMANAGER_GROUP_WAIT
 * is 1 s here (30 s by default) so that the test does not wait for grouping.
 */
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { ComposeStack } from "../harness/compose.js";
import { bridgeGateway, docker, ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

interface WebhookAlert {
  status: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
interface WebhookMessage {
  receiver: string;
  status: string;
  alerts: WebhookAlert[];
}

const ALERT = "PgHaRouterPrimaryChanged";

describe("alerting: a failover reaches Alertmanager and its webhook", { timeout: 15 * 60_000 }, () => {
  let stack: ComposeStack;
  let server: http.Server;
  const received: WebhookMessage[] = [];

  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router", "prometheus", "alertmanager"]);
    // The webhook receiver, where the Alertmanager container can reach it.
    const host = await bridgeGateway();
    server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => {
        body += d.toString("utf8");
      });
      req.on("end", () => {
        try {
          if (req.method === "POST" && req.url === "/hook") received.push(JSON.parse(body) as WebhookMessage);
        } catch {}
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    const port = (server.address() as AddressInfo).port;
    stack = await ComposeStack.up("alerting", {
      profiles: ["monitoring"],
      cli: "v2",
      env: { ALERTMANAGER_WEBHOOK_URL: `http://${host}:${port}/hook`, ALERTMANAGER_GROUP_WAIT: "1s" },
    });
    await stack.waitReady();
  });

  after(async () => {
    await stack?.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  it("Prometheus sends its alerts to the stack's Alertmanager, which answers", async () => {
    await waitFor(
      "Prometheus to know an active Alertmanager",
      async () => {
        const res = await fetch(`${stack.prometheusUrl}/api/v1/alertmanagers`, {
          signal: AbortSignal.timeout(5000),
        });
        const body = (await res.json()) as { data: { activeAlertmanagers: { url: string }[] } };
        return body.data.activeAlertmanagers.some((a) => a.url === "http://alertmanager:9093/api/v2/alerts");
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    const status = await fetch(`${stack.alertmanagerUrl}/api/v2/status`, {
      signal: AbortSignal.timeout(5000),
    });
    assert.equal(status.status, 200);
    const config = ((await status.json()) as { config: { original: string } }).config.original;
    assert.match(config, /receiver: webhook/);
    assert.match(config, /group_wait: 1s/);
  });

  it("kill the leader's container: the failover alert is listed by Alertmanager's API and reaches the webhook", async () => {
    const leader = (await stack.leader())!;
    const killedAt = Date.now();
    await docker(["kill", `${stack.project}-${leader}`]);

    type Listed = { labels: Record<string, string>; status: { state: string } };
    const listed = await waitFor(
      `Alertmanager to list ${ALERT}`,
      async () => {
        const res = await fetch(`${stack.alertmanagerUrl}/api/v2/alerts?filter=alertname%3D%22${ALERT}%22`, {
          signal: AbortSignal.timeout(5000),
        });
        const alerts = (await res.json()) as Listed[];
        return alerts.find((a) => a.labels["route"] === stack.project) ?? null;
      },
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    console.log(
      `Alertmanager listed ${ALERT} ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`,
    );
    assert.equal(listed.status.state, "active");
    assert.equal(listed.labels["severity"], "info");

    const got = await waitFor(
      `the webhook to receive ${ALERT}`,
      async () =>
        received
          .flatMap((m) => m.alerts.map((a) => ({ m, a })))
          .find(({ a }) => a.labels["alertname"] === ALERT && a.labels["route"] === stack.project) ?? null,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    console.log(`the webhook received it ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill`);
    assert.equal(got.m.receiver, "webhook");
    assert.equal(got.a.status, "firing");
    assert.match(
      got.a.annotations["summary"] ?? "",
      new RegExp(`The router's primary for ${stack.project} changed`),
    );
  });
});
