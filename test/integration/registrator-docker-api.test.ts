/**
 * The registrator's Docker API client against the real dockerd: the four calls
 * it makes answer what `docker` itself shows, Docker's errors keep their status
 * and message, a missing socket keeps its errno, and the event stream delivers a
 * container's start and ends when its signal aborts.
 */
// run-tests: heavy (containers on this machine's engine, which another file's registrator would see)
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { DockerApi, DockerStatusError } from "../../registrator/docker-api.js";
import { JsonLineDecoder } from "../../registrator/docker-events.js";
import { parseDockerHost } from "../../registrator/options.js";
import { DockerFixture } from "../harness/docker-fixture.js";

const api = DockerApi.forEndpoint(parseDockerHost("unix:///var/run/docker.sock"));
const timeout = () => AbortSignal.timeout(10_000);

describe("registrator Docker API client", () => {
  const docker = new DockerFixture("regapi");
  after(() => docker.cleanup());

  it("info carries the daemon's clock", async () => {
    const info = await api.info(timeout());
    assert.ok(
      info.SystemTime && Number.isFinite(Date.parse(info.SystemTime)),
      JSON.stringify(info.SystemTime),
    );
  });

  it("lists a running container and inspects it as docker inspect does", async () => {
    const id = await docker.run("listed", ["-p", "127.0.0.1::5432"]);
    const list = await api.listContainers(timeout());
    assert.ok(
      list.some((c) => c.Id === id),
      "the running container is listed",
    );
    const mine = (await api.inspectContainer(id, timeout())) as { Id: string; Name: string };
    const cli = await docker.inspect("listed");
    assert.equal(mine.Id, cli["Id"]);
    assert.equal(mine.Name, `/${docker.name("listed")}`);
    assert.deepEqual(
      (mine as unknown as { NetworkSettings: { Ports: unknown } }).NetworkSettings.Ports,
      (cli["NetworkSettings"] as { Ports: unknown }).Ports,
    );
  });

  it("an unknown container is a 404 with Docker's message", async () => {
    const err = await api.inspectContainer("pgha-no-such-container", timeout()).catch((e: unknown) => e);
    assert.ok(err instanceof DockerStatusError, String(err));
    assert.equal(err.statusCode, 404);
    assert.match(err.message, /^HTTP 404: .*pgha-no-such-container/);
  });

  it("a missing socket fails with its errno", async () => {
    const nowhere = DockerApi.forEndpoint(parseDockerHost("unix:///nonexistent/docker.sock"));
    const err = (await nowhere.info(timeout()).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    assert.equal(err.code, "ENOENT");
  });

  it("streams a start event, and ends when its signal aborts", async () => {
    const abort = new AbortController();
    const info = await api.info(timeout());
    const stream = await api.events(
      {
        since: Date.parse(info.SystemTime ?? "") / 1000,
        filters: { type: ["container"], event: ["start"], label: [`pgha.test.run=${docker.prefix}`] },
      },
      abort.signal,
    );
    const decoder = new JsonLineDecoder();
    const started = new Promise<{ id: string }>((resolve) => {
      stream.on("data", (chunk: Buffer) => {
        for (const v of decoder.push(chunk).values) resolve(v as { id: string });
      });
    });
    const closed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
    stream.on("error", () => undefined);
    const id = await docker.run("evented");
    assert.equal((await started).id, id);
    abort.abort();
    await closed;
  });
});
