/**
 * The monitoring profile's Alertmanager: the configuration its entrypoint renders from the
 * environment passes `amtool check-config`, sends every alert to ALERTMANAGER_WEBHOOK_URL
 * when it is set and nowhere when it is empty, refuses bad settings with a message naming
 * them, and every setting it reads is passed by docker-compose.yml; Prometheus sends its
 * alerts to it. amtool comes with Debian's prometheus-alertmanager package.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { parse } from "yaml";

const ROOT = new URL("../../../", import.meta.url).pathname;
const ENTRYPOINT = join(ROOT, "alertmanager", "entrypoint.sh");
const AMTOOL = process.env["AMTOOL"] ?? "amtool";
const dir = mkdtempSync(join(tmpdir(), "alertmanager-config-"));

function exec(
  file: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { env: { PATH: process.env["PATH"], ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        if ((err as NodeJS.ErrnoException | null)?.code === "ENOENT") {
          reject(
            new Error(
              file === AMTOOL
                ? `amtool not found (${AMTOOL}): install Debian's prometheus-alertmanager package ` +
                    "(apt-get install prometheus-alertmanager; ./pgha setup does), which carries /usr/bin/amtool, or set AMTOOL"
                : `${file} not found`,
            ),
          );
          return;
        }
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

/** Renders the configuration with these settings; writes it to a file for amtool. */
async function render(env: Record<string, string>): Promise<{ file: string; text: string }> {
  const r = await exec(ENTRYPOINT, ["--render"], env);
  assert.equal(r.code, 0, r.stderr);
  const file = join(dir, `alertmanager-${Math.random().toString(36).slice(2)}.yml`);
  writeFileSync(file, r.stdout);
  return { file, text: r.stdout };
}

/** The receiver amtool routes an alert with these labels to. */
async function receiverOf(file: string, labels: string[]): Promise<string> {
  const r = await exec(AMTOOL, ["config", "routes", "test", `--config.file=${file}`, ...labels]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return r.stdout.trim();
}

after(() => rmSync(dir, { recursive: true, force: true }));

describe("Alertmanager's configuration (alertmanager/entrypoint.sh)", () => {
  it("without ALERTMANAGER_WEBHOOK_URL: valid, and every alert goes to the receiver that sends nowhere", async () => {
    const { file, text } = await render({});
    const check = await exec(AMTOOL, ["check-config", file]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /SUCCESS/);
    assert.equal(await receiverOf(file, ["alertname=PgHaRouterPrimaryChanged", "severity=info"]), "none");
    const config = parse(text) as { receivers: { name: string; webhook_configs?: unknown }[] };
    assert.deepEqual(config.receivers, [{ name: "none" }]);
  });

  it("with a webhook URL (quotes and all): valid, every alert goes to it, resolved ones too", async () => {
    const url = "https://hooks.example.test/services/T0/B1?token=it's-secret&x=1";
    const { file, text } = await render({ ALERTMANAGER_WEBHOOK_URL: url, ALERTMANAGER_GROUP_WAIT: "1s" });
    const check = await exec(AMTOOL, ["check-config", file]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    for (const labels of [
      ["alertname=PgHaRouterPrimaryChanged"],
      ["alertname=PgHaEtcdNoLeader", "severity=critical"],
    ]) {
      assert.equal(await receiverOf(file, labels), "webhook");
    }
    const config = parse(text) as {
      route: { group_wait: string; group_by: string[] };
      receivers: { name: string; webhook_configs?: { url: string; send_resolved: boolean }[] }[];
    };
    assert.deepEqual(config.receivers[1]?.webhook_configs, [{ url, send_resolved: true }]);
    assert.equal(config.route.group_wait, "1s");
    assert.ok(config.route.group_by.includes("alertname") && config.route.group_by.includes("route"));
  });

  it("refuses bad settings, naming the setting, and never prints the URL", async () => {
    for (const [env, message] of [
      [{ ALERTMANAGER_WEBHOOK_URL: "hooks.example.test/x" }, /ALERTMANAGER_WEBHOOK_URL must be an http/],
      [{ ALERTMANAGER_WEBHOOK_URL: "http://a b" }, /ALERTMANAGER_WEBHOOK_URL must not contain spaces/],
      [{ ALERTMANAGER_GROUP_WAIT: "soon" }, /ALERTMANAGER_GROUP_WAIT=soon is not a duration/],
      [{ ALERTMANAGER_REPEAT_INTERVAL: "4 h" }, /ALERTMANAGER_REPEAT_INTERVAL=4 h is not a duration/],
      [{ ALERTMANAGER_SEND_RESOLVED: "yes" }, /ALERTMANAGER_SEND_RESOLVED must be true or false/],
    ] as const) {
      const r = await exec(ENTRYPOINT, ["--render"], env);
      assert.equal(r.code, 2, JSON.stringify(env));
      assert.match(r.stderr, message);
      assert.equal(r.stdout, "");
      if ("ALERTMANAGER_WEBHOOK_URL" in env) assert.ok(!r.stderr.includes(env.ALERTMANAGER_WEBHOOK_URL));
    }
  });

  it("docker-compose.yml passes every setting the entrypoint reads, and Prometheus sends alerts to it", () => {
    const script = readFileSync(ENTRYPOINT, "utf8");
    const read = new Set([...script.matchAll(/\$\{(ALERTMANAGER_[A-Z_]+):-/g)].map((m) => m[1]!));
    read.delete("ALERTMANAGER_CONFIG"); // where the image writes it, not a setting
    const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8")) as {
      services: Record<
        string,
        { environment?: Record<string, string>; profiles?: string[]; ports?: string[] }
      >;
    };
    const am = compose.services["alertmanager"];
    assert.ok(am, "an alertmanager service");
    assert.deepEqual(am.profiles, ["monitoring"]);
    assert.deepEqual(Object.keys(am.environment ?? {}).sort(), [...read].sort());
    assert.equal(
      am.environment?.["ALERTMANAGER_WEBHOOK_URL"],
      ["$", "{ALERTMANAGER_WEBHOOK_URL:-}"].join(""),
      "empty by default",
    );
    assert.match(am.ports?.[0] ?? "", /:9093$/);
    const prometheus = parse(readFileSync(join(ROOT, "prometheus", "prometheus.yml"), "utf8")) as {
      alerting?: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    assert.deepEqual(prometheus.alerting?.alertmanagers[0]?.static_configs[0]?.targets, [
      "alertmanager:9093",
    ]);
  });
});
