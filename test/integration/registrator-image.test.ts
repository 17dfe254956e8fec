/**
 * The pgha/registrator:dev image: built from registrator/Dockerfile, run as a
 * non-root user with the socket's group and the socket mounted read-only, healthy
 * by its HEALTHCHECK, registering containers into an etcd on Docker's bridge, and
 * revoking its keys on `docker stop`. Without the socket's group it says why and
 * keeps retrying instead of exiting.
 */
// run-tests: heavy (a registrator image on this machine's engine, and containers it publishes)
import assert from "node:assert/strict";
import { copyFileSync, existsSync, statSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { bridgeGateway, imageOf } from "../harness/docker.js";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { run, waitFor } from "../harness/proc.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
/** pgha/registrator:dev, or PGHA_REGISTRATOR_IMAGE: a branch builds and tests its own tag, not the shared one. */
const IMAGE = imageOf("registrator");
const WAIT = { timeoutMs: 60_000, intervalMs: 200 };

/** The build stage's npm needs the host's CA where the registry is reached through a TLS-inspecting proxy. */
async function provideBuildCa(): Promise<void> {
  const target = `${ROOT}.build-ca/ca.crt`;
  if (existsSync(target)) return;
  const cafile = (await run("npm", ["config", "get", "cafile"]).catch(() => ({ stdout: "" }))).stdout.trim();
  if (cafile && cafile !== "null" && existsSync(cafile)) copyFileSync(cafile, target);
}

describe("registrator image", () => {
  let etcd: EtcdServer;
  const docker = new DockerFixture("regi");
  const host = `${docker.prefix}-host`;
  const gid = String(statSync("/var/run/docker.sock").gid);
  const key = `/img/debian/${host}:${docker.name("app")}:5432`;
  const value = async () => (await etcd.dump(key))[key];

  before(async () => {
    await provideBuildCa();
    await run("docker", ["build", "-q", "-f", "registrator/Dockerfile", "-t", IMAGE, "."], {
      cwd: ROOT,
      timeoutMs: 600_000,
    });
    // Docker's bridge gateway differs between engines (172.17.0.1 is only the usual default).
    etcd = await EtcdServer.start({ host: await bridgeGateway() });
    await docker.run("app", ["-p", "127.0.0.1::5432"]);
  });
  after(async () => {
    await docker.cleanup();
    await etcd?.destroy();
  });

  it("holds only the compiled registrator, shared code and production modules", async () => {
    const { dist, app } = await docker.imageContents(IMAGE);
    assert.deepEqual(dist, ["registrator", "shared"]);
    assert.doesNotMatch(app, /build-ca|ca\.crt|typescript|\.ts\b/);
    const dev = await docker.docker(
      "run",
      "--rm",
      "--entrypoint",
      "sh",
      IMAGE,
      "-c",
      "for p in typescript @biomejs/biome @types/dockerode dockerode pg; do [ -e node_modules/$p ] && echo $p; done; true",
    );
    assert.equal(dev, "", "no dev dependencies");
  });

  it("runs as a non-root user with the socket read-only, gets healthy, registers, and revokes on stop", async () => {
    const name = docker.name("registrator");
    await docker.runImage(
      "registrator",
      IMAGE,
      ["--group-add", gid, "-v", "/var/run/docker.sock:/var/run/docker.sock:ro"],
      ["-hostname", host, "-ttl", "30", `etcd://${etcd.endpoint}/img`],
    );
    const c = (await docker.inspect("registrator")) as {
      Config: { User: string };
      Mounts: { RW: boolean }[];
    };
    assert.equal(c.Config.User, "registrator");
    assert.equal(c.Mounts[0]?.RW, false, "socket mounted read-only");
    assert.equal(await docker.docker("exec", name, "id", "-u"), "10001");
    await waitFor(
      "the key of the app container",
      async () => (await value()) === `127.0.0.1:${await docker.hostPort("app", "5432")}`,
      WAIT,
    );
    await waitFor(
      "the HEALTHCHECK to pass",
      async () => (await docker.docker("inspect", "-f", "{{.State.Health.Status}}", name)) === "healthy",
      WAIT,
    );
    await docker.docker("stop", name);
    assert.equal(await docker.docker("inspect", "-f", "{{.State.ExitCode}}", name), "0");
    assert.equal(await value(), undefined, "keys revoked on docker stop");
  });

  it("without the socket's group: says so and keeps retrying instead of exiting", async () => {
    const name = docker.name("nogroup");
    await docker.runImage(
      "nogroup",
      IMAGE,
      ["-v", "/var/run/docker.sock:/var/run/docker.sock:ro"],
      ["-hostname", `${host}-nogroup`, `etcd://${etcd.endpoint}/nogroup`],
    );
    await waitFor(
      "the permission hint",
      async () =>
        (await run("docker", ["logs", name])).stdout.includes("permission denied on the Docker socket"),
      WAIT,
    );
    assert.equal(await docker.docker("inspect", "-f", "{{.State.Running}}", name), "true");
  });
});
