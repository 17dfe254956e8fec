/**
 * The services run on the host's Node.js 20 and, in their images, on Node.js 22. Each built
 * entry point is run under the Node 22 of the `node:22-trixie-slim` image (the base of the
 * service images; scripts/seed-images.sh makes it exist without a registry), with this
 * checkout mounted read-only: it must load and answer `--help` and a bad option exactly as it
 * does under the host's Node. In the integration tier because it needs a Docker engine.
 */
// run-tests: heavy (a container on this machine's engine, which another file's registrator would see)
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { cleanEnv, ROOT, runToExit, serviceBins } from "../harness/bins.js";
import { run } from "../harness/proc.js";

const IMAGE = "node:22-trixie-slim";
const root = ROOT.replace(/\/$/, "");
const built = serviceBins().filter((b) => b.built && b.sourceExists);

describe(`service entry points under Node 22 (${IMAGE})`, () => {
  const name = `pgha-test-node22-${randomBytes(4).toString("hex")}`;
  let started = false;

  before(async () => {
    const inspect = await runToExit("docker", ["image", "inspect", IMAGE]);
    assert.equal(inspect.code, 0, `the image ${IMAGE} is missing (scripts/seed-images.sh makes it)`);
    await run("docker", [
      "run",
      "-d",
      "--rm",
      "--name",
      name,
      "--label",
      "pgha.test=1",
      "--network",
      "none",
      "-v",
      `${root}:${root}:ro`,
      "-w",
      root,
      "--entrypoint",
      "sleep",
      IMAGE,
      "600",
    ]);
    started = true;
  });

  after(async () => {
    if (started) await runToExit("docker", ["rm", "-f", name]);
  });

  const inNode22 = (args: readonly string[]) => runToExit("docker", ["exec", name, "node", ...args]);
  const onHost = (args: readonly string[]) => runToExit(process.execPath, args, { env: cleanEnv() });

  it("at least one service entry point is built, so this is checked at all", () => {
    assert.ok(built.length > 0, "no service entry point exists after the build");
  });

  it("the image runs Node.js 22", async () => {
    const r = await inNode22(["--version"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^v22\./);
  });

  for (const bin of built) {
    it(`${bin.name}: --help under Node 22 exits 0 and prints what the host's Node prints`, async () => {
      const [host, n22] = await Promise.all([onHost([bin.path, "--help"]), inNode22([bin.path, "--help"])]);
      assert.equal(host.code, 0, host.stderr);
      assert.equal(n22.code, 0, `exit code under Node 22; stderr: ${n22.stderr}`);
      assert.equal(n22.stderr, "");
      assert.equal(n22.stdout, host.stdout);
    });

    it(`${bin.name}: an unknown option under Node 22 exits 2 with the same one line`, async () => {
      const args = [bin.path, "--no-such-option-xyz"];
      const [host, n22] = await Promise.all([onHost(args), inNode22(args)]);
      assert.equal(n22.code, 2, `exit code under Node 22; stderr: ${n22.stderr}`);
      assert.equal(n22.stderr, host.stderr);
      assert.equal(n22.stderr.trimEnd().split("\n").length, 1);
    });
  }
});
