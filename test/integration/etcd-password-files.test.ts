/**
 * The router and the registrator take etcd's password from a file (`*_ETCD_PASSWORD_FILE`,
 * Docker secrets) so that it is never on a command line or in `docker inspect`. Against a
 * real etcd with authentication on: each authenticates with the password read from its file,
 * neither logs it, and an unreadable file is one clear line and exit code 2.
 */
// run-tests: heavy (a registrator on this machine's engine: it would see other files' containers)
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { ETCDCTL_BIN, EtcdServer } from "../harness/etcd.js";
import { run, waitFor } from "../harness/proc.js";
import { REGISTRATOR_MAIN, RegistratorProcess } from "../harness/registrator.js";
import { RouterProcess } from "../harness/router.js";

const ROUTER_MAIN = fileURLToPath(new URL("../../router/main.js", import.meta.url));
// Characters that a shell, a URL or a YAML file would take for something else.
const PASSWORD = "s3cret #=:<<&*! 'q\" ü";

let etcd: EtcdServer;
let dir: string;
let passwordFile: string;

describe("etcd's password from a file, with authentication on", { timeout: 120_000 }, () => {
  before(async () => {
    etcd = await EtcdServer.start();
    const ctl = (...args: string[]) =>
      run(ETCDCTL_BIN, ["--endpoints", etcd.url, ...args], { env: { ...process.env, ETCDCTL_API: "3" } });
    await ctl("user", "add", "root", "--new-user-password", PASSWORD);
    await ctl("auth", "enable");
    dir = mkdtempSync(join(tmpdir(), "etcd-password-file-"));
    passwordFile = join(dir, "etcd-password");
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  });

  after(async () => {
    await etcd?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("etcd refuses a client without the password (authentication is really on)", async () => {
    await assert.rejects(
      run(ETCDCTL_BIN, ["--endpoints", etcd.url, "get", "/service", "--prefix"], {
        env: { ...process.env, ETCDCTL_API: "3" },
      }),
      /user name is empty|permission denied|authentication/i,
    );
  });

  it("the router's watch is live with ROUTER_ETCD_PASSWORD_FILE, and its log never holds the password", async () => {
    const router = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: "demo",
      env: { ROUTER_ETCD_USER: "root", ROUTER_ETCD_PASSWORD_FILE: passwordFile },
    });
    try {
      await waitFor(
        "the router's etcd watch",
        async () => (await router.metric("router_etcd_watch_up")) === 1,
        {
          timeoutMs: 20_000,
        },
      );
      const log = readFileSync(router.logFile, "utf8");
      assert.ok(log.length > 0, "the router logged");
      assert.ok(!log.includes(PASSWORD) && !log.includes("s3cret"), "no password in the log");
    } finally {
      await router.destroy().catch(() => undefined);
    }
  });

  it("the registrator holds its lease with REGISTRATOR_ETCD_PASSWORD_FILE, and its log never holds the password", async () => {
    const reg = await RegistratorProcess.start({
      etcd,
      prefix: "/services",
      hostname: "file-secret-host",
      args: ["-etcd-user", "root"],
      env: { REGISTRATOR_ETCD_PASSWORD_FILE: passwordFile },
    });
    try {
      assert.equal(await reg.metric("registrator_ready"), 1);
      const log = readFileSync(reg.proc.logFile, "utf8");
      assert.ok(log.length > 0, "the registrator logged");
      assert.ok(!log.includes(PASSWORD) && !log.includes("s3cret"), "no password in the log");
    } finally {
      await reg.stop();
    }
  });

  for (const [name, main, variable] of [
    ["router", ROUTER_MAIN, "ROUTER_ETCD_PASSWORD_FILE"],
    ["registrator", REGISTRATOR_MAIN, "REGISTRATOR_ETCD_PASSWORD_FILE"],
  ] as const) {
    it(`${name}: an unreadable password file is one line naming the variable, and exit code 2`, () => {
      const missing = join(dir, "no-such-file");
      const r = spawnSync(
        process.execPath,
        [main, ...(name === "registrator" ? ["etcd://127.0.0.1:1/x"] : [])],
        {
          env: { PATH: process.env["PATH"], [variable]: missing },
          encoding: "utf8",
          timeout: 20_000,
        },
      );
      assert.equal(r.status, 2, r.stderr);
      assert.equal(
        r.stderr.trim(),
        `${name}: cannot read ${variable.replace(/_FILE$/, "")}_FILE ${JSON.stringify(missing)} (ENOENT): expected a readable file`,
      );
    });
  }
});
