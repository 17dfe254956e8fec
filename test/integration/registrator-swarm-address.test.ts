/**
 * `-ip swarm` against real engines: on a Docker engine that is a swarm node (its own
 * network namespace and dockerd, test/harness/docker-hosts.ts), the registrator advertises
 * a container's published port on the address the node gave its swarm; on an engine that is
 * no swarm node (the machine's own), it refuses to start with one line saying why and what
 * to do instead, exit code 2.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { DockerApi } from "../../registrator/docker-api.js";
import { completeFromEngine } from "../../registrator/engine-identity.js";
import { parseDockerHost, parseOptions } from "../../registrator/options.js";
import { type DockerHost, DockerHosts } from "../harness/docker-hosts.js";
import { EtcdServer } from "../harness/etcd.js";
import { run, waitFor } from "../harness/proc.js";
import { REGISTRATOR_MAIN, RegistratorProcess } from "../harness/registrator.js";

const IMAGE = process.env["PGHA_HOLDER_IMAGE"] ?? "debian:trixie-slim";

describe("registrator -ip swarm", () => {
  let dh: DockerHosts;
  let node: DockerHost;
  let etcd: EtcdServer;
  let reg: RegistratorProcess | undefined;

  before(async () => {
    dh = await DockerHosts.create({ count: 1, images: [IMAGE], label: "regswarm" });
    node = dh.hosts[0]!;
    await dh.docker(node, ["swarm", "init", "--advertise-addr", node.ip]);
    etcd = await EtcdServer.start();
  });
  after(async () => {
    await reg?.stop();
    await etcd?.destroy();
    await dh?.destroy();
  });

  it("asks the engine for the node's swarm address", async () => {
    const parsed = parseOptions(["-ip", "swarm", "-hostname", "n1", "etcd://127.0.0.1"], {}, "os");
    assert.equal(parsed.kind, "options");
    if (parsed.kind !== "options") return;
    const o = await completeFromEngine(
      parsed.options,
      DockerApi.forEndpoint(parseDockerHost(node.dockerHost)),
    );
    assert.equal(o.ip, node.ip);
    assert.equal(o.hostname, "n1");
  });

  it("registers a published port on the node's swarm address", async () => {
    reg = await RegistratorProcess.start({
      etcd,
      prefix: "/sw",
      hostname: "node-a",
      args: ["-ip", "swarm"],
      env: { DOCKER_HOST: node.dockerHost },
    });
    await dh.docker(node, ["run", "-d", "--name", "published", "-p", "5432", IMAGE, "sleep", "infinity"]);
    const port = (await dh.docker(node, ["port", "published", "5432/tcp"])).split("\n")[0]!.split(":").at(-1);
    const key = "/sw/debian/node-a:published:5432";
    await waitFor(
      "the container's key",
      async () => (await etcd.dump("/sw/"))[key] === `${node.ip}:${port}`,
      { timeoutMs: 30_000, intervalMs: 100 },
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await etcd.dump("/sw/"))}\n${reg?.tail(20)}`);
    });
  });

  it("refuses to start on an engine that is no swarm node, saying why (exit 2)", async () => {
    const info = (await run("docker", ["info", "-f", "{{.Swarm.LocalNodeState}}"])).stdout.trim();
    assert.equal(info, "inactive", "the machine's engine is no swarm node");
    const r = spawnSync(
      process.execPath,
      [REGISTRATOR_MAIN, "-ip", "swarm", "-hostname", "h", `etcd://${etcd.endpoint}`],
      {
        env: { ...process.env, DOCKER_HOST: "unix:///var/run/docker.sock" },
        timeout: 60_000,
        encoding: "utf8",
      },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.equal(
      r.stderr.trim(),
      "registrator: -ip swarm: this Docker engine is not an active swarm node (its swarm state is inactive): join it to a swarm, or give -ip an address",
    );
  });
});
