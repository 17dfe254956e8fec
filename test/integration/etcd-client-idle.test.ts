/**
 * The project's etcd client (shared/etcd.ts) left idle with no stream open, as the
 * agent's discovery and the test tools use it: etcd does not send it away. etcd
 * counts each keepalive ping on a connection without a stream as a strike and
 * closes the connection with GOAWAY "too_many_pings" after three (gRPC's default
 * enforcement, which etcd keeps); the client used to ping every 10 s regardless,
 * so after ~40 s idle its connection was dropped and grpc-js logged "rejected by
 * server because of excess pings". The client runs in a child process so that its
 * stderr, where grpc-js logs, can be read.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { EtcdServer } from "../harness/etcd.js";

const IDLE_MS = 48_000; // etcd strikes the pings at 20, 30 and 40 s (the first is free); a margin

const CLIENT = `
import { createEtcdClient } from ${JSON.stringify(new URL("../../shared/etcd.js", import.meta.url).href)};
const [host, port, idleMs] = process.argv.slice(1);
const c = createEtcdClient({ hosts: [{ host, port: Number(port) }] });
await c.put("/idle/a").value("1");
await new Promise((r) => setTimeout(r, Number(idleMs)));
process.stdout.write(String(await c.get("/idle/a").string()));
c.close();
`;

describe("an idle etcd client with no stream", () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await EtcdServer.start();
  });
  after(async () => {
    await etcd?.destroy();
  });

  it(`keeps its connection through ${IDLE_MS / 1000} s without a call (no GOAWAY for excess pings)`, async () => {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ["--input-type=module", "-e", CLIENT, etcd.host, String(etcd.clientPort), String(IDLE_MS)],
      { timeout: IDLE_MS + 30_000 },
    );
    assert.equal(stdout, "1", "the value read after the idle time");
    assert.doesNotMatch(stderr, /excess pings|too_many_pings|GOAWAY/i, stderr);
  });
});
