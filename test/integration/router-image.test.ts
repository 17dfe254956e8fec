/**
 * The pgha/router:dev image: built from router/Dockerfile, holding only the
 * compiled router, shared code and production modules, running as a non-root
 * user, healthy by its HEALTHCHECK, routing to a real Patroni leader (host
 * network, so it reaches the cluster on loopback), and exiting 0 on docker stop.
 */
// run-tests: heavy (containers on this machine's engine, which another file's registrator would see)
import assert from "node:assert/strict";
import { copyFileSync, existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { imageOf } from "../harness/docker.js";
import { DockerFixture } from "../harness/docker-fixture.js";
import { PatroniCluster } from "../harness/patroni.js";
import { freePort } from "../harness/ports.js";
import { run, waitFor } from "../harness/proc.js";
import { whoServes } from "../harness/router.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** pgha/router:dev, or PGHA_ROUTER_IMAGE: a branch builds and tests its own tag, not the shared one. */
const IMAGE = imageOf("router");

/** The build stage's npm needs the host's CA where the registry is reached through a TLS-inspecting proxy. */
async function provideBuildCa(): Promise<void> {
  const target = `${ROOT}.build-ca/ca.crt`;
  if (existsSync(target)) return;
  const cafile = (await run("npm", ["config", "get", "cafile"]).catch(() => ({ stdout: "" }))).stdout.trim();
  if (cafile && cafile !== "null" && existsSync(cafile)) copyFileSync(cafile, target);
}

describe("router image", () => {
  const docker = new DockerFixture("router");
  let c: PatroniCluster;

  before(async () => {
    await provideBuildCa();
    const [built, cluster] = await Promise.all([
      run("docker", ["build", "-q", "-f", "router/Dockerfile", "-t", IMAGE, "."], {
        cwd: ROOT,
        timeoutMs: 600_000,
      }),
      PatroniCluster.start({ nodes: 2 }),
    ]);
    void built;
    c = cluster;
  });
  after(async () => {
    await docker.cleanup();
    await c?.destroy();
  });

  it("holds only the compiled router, shared code and production modules", async () => {
    const { dist, app } = await docker.imageContents(IMAGE);
    assert.deepEqual(dist, ["router", "shared"]);
    assert.doesNotMatch(app, /build-ca|ca\.crt|typescript|\.ts\b/);
    assert.notEqual(await docker.docker("run", "--rm", "--entrypoint", "id", IMAGE, "-u"), "0");
  });

  it("a bad flag exits 2 with one line", async () => {
    const r = await run("docker", ["run", "--rm", IMAGE, "--check", "sometimes"]).then(
      () => "exit 0",
      (err: Error) => err.message,
    );
    assert.match(r, /invalid value "sometimes" for -check/);
  });

  it("gets healthy, routes to the leader, and exits 0 on docker stop", async () => {
    const [port, admin] = [await freePort(), await freePort()];
    const name = docker.name("router");
    await docker.runImage("router", IMAGE, [
      "--network",
      "host",
      "-e",
      `ROUTER_ETCD=${c.etcd.endpoint}`,
      "-e",
      `ROUTER_SCOPE=${c.scope}`,
      "-e",
      `ROUTER_LISTEN=127.0.0.1:${port}`,
      "-e",
      "ROUTER_REPLICA_LISTEN=off",
      "-e",
      `ROUTER_ADMIN_LISTEN=127.0.0.1:${admin}`,
    ]);
    await waitFor(
      "the container to be healthy",
      async () => (await docker.docker("inspect", "-f", "{{.State.Health.Status}}", name)) === "healthy",
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const w = await whoServes(c, port);
    assert.equal(w.member, await c.leader());
    assert.equal(w.standby, false);
    await docker.docker("stop", "-t", "20", name);
    assert.equal(await docker.docker("inspect", "-f", "{{.State.ExitCode}}", name), "0");
  });
});
