/**
 * A three-member etcd, one member per network namespace, and our services' etcd
 * client (shared/etcd.ts) listing all three. Each member in turn is cut off from
 * the other two (iptables in its namespace; the clients still reach it): it loses
 * its leader, and a watch that was on it must not stay "live" while it sees
 * nothing. With every call requiring a leader, the member ends the watch, the
 * client moves to another member, and a key written on the majority arrives.
 *
 * Control: an etcd3 client pinned to the cut-off member without the requirement
 * keeps its watch open and silent: the failure this guards against.
 *
 * Then each member in turn goes silent for everyone, clients included (its host cut off
 * whole: no answer, no reset, as a partitioned host in multi-host mode). A watch that was
 * live on it notices through gRPC keepalive and starts again on another member; a watch
 * started on a silent member is given up after WATCH_START_TIMEOUT_MS (without that, the
 * start itself waited for the kernel's connect timeout: the router on the majority side of
 * a partition kept its view of the old leader for 90 s in the e2e test `many-hosts`).
 */
// run-tests: early (over a minute)
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../shared/etcd.js";
import { createLogger } from "../../shared/logger.js";
import { PrefixWatch } from "../../shared/watch.js";
import { ETCD_BIN, etcdMemberArgs } from "../harness/etcd.js";
import { type LabHost, NetLab } from "../harness/netns.js";
import type { Spawned } from "../harness/proc.js";
import { waitFor } from "../harness/proc.js";

const silent = createLogger({ name: "test", level: "silent" });
let lab: NetLab;
let dir: string;
const members: Spawned[] = [];

function endpoint(h: LabHost): { host: string; port: number } {
  return { host: h.ip, port: 2379 };
}

async function healthy(h: LabHost): Promise<boolean> {
  const c = createEtcdClient({ hosts: [endpoint(h)], callTimeoutMs: 1000 });
  try {
    await c.get("/health-probe").string();
    return true;
  } catch {
    return false;
  } finally {
    c.close();
  }
}

/** Waits until a healed member answers in the cluster again. */
async function backInCluster(cut: LabHost): Promise<void> {
  await waitFor(`${cut.name} back in the cluster`, () => healthy(cut), {
    timeoutMs: 30_000,
    intervalMs: 500,
  });
}

/**
 * A first write the watch must see, then the cut, then a write the majority takes (it elects
 * a leader if the cut-off member led); returns when the cut began and when that write landed.
 */
async function firstWriteThenCut(
  watch: PrefixWatch,
  writer: ReturnType<typeof createEtcdClient>,
  prefix: string,
  cut: () => Promise<void>,
): Promise<{ t0: number; written: number }> {
  await writer.put(`${prefix}before`).value("1");
  await waitFor("the watch to see the first write", () => watch.snapshot.kvs.has(`${prefix}before`), {
    timeoutMs: 10_000,
  });
  const t0 = Date.now();
  await cut();
  await waitFor(
    "the majority to take a write",
    async () => {
      await writer.put(`${prefix}after`).value("2");
      return true;
    },
    { timeoutMs: 30_000, intervalMs: 250 },
  );
  return { t0, written: Date.now() };
}

describe("etcd: a member that loses quorum is left for another", { timeout: 240_000 }, () => {
  before(async () => {
    lab = await NetLab.create(3, "etcd");
    dir = mkdtempSync(join(tmpdir(), "etcd-quorum-"));
    const cluster = lab.hosts.map((h) => `${h.name}=http://${h.ip}:2380`).join(",");
    for (const h of lab.hosts) {
      members.push(
        lab.spawn(
          h,
          ETCD_BIN,
          etcdMemberArgs({
            name: h.name,
            dataDir: join(dir, h.name),
            clientUrl: `http://${h.ip}:2379`,
            peerUrl: `http://${h.ip}:2380`,
            cluster,
          }),
          { logFile: join(dir, `${h.name}.log`) },
        ),
      );
    }
    for (const h of lab.hosts) await waitFor(`${h.name} to answer`, () => healthy(h), { timeoutMs: 30_000 });
  });

  after(async () => {
    for (const m of members) {
      try {
        if (m.child.pid) process.kill(-m.child.pid, "SIGKILL");
      } catch {}
    }
    await lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const i of [0, 1, 2]) {
    it(`member ${i + 1} cut off from the others: the watch moves on and sees a write made on the majority`, async () => {
      const cut = lab.hosts[i]!;
      const majority = lab.hosts.filter((h) => h !== cut);
      const ours = createEtcdClient({ hosts: lab.hosts.map(endpoint) });
      const watch = new PrefixWatch(ours, `/q${i}/`, silent);
      // The control: pinned to the member that will be cut off, no leader required.
      const plain = new Etcd3({ hosts: `http://${cut.ip}:2379` });
      const seenByPlain: string[] = [];
      const plainWatch = await plain.watch().prefix(`/q${i}/`).create();
      plainWatch.on("put", (kv) => seenByPlain.push(kv.key.toString()));
      const writer = createEtcdClient({ hosts: majority.map(endpoint) });
      // Ours, pinned to the member that will be cut off: it must stop claiming to be live.
      const oursPinned = createEtcdClient({ hosts: [endpoint(cut)] });
      const pinnedWatch = new PrefixWatch(oursPinned, `/q${i}/`, silent);
      let pinnedLeftLive = 0;
      pinnedWatch.on("state", (st) => {
        if (st !== "live" && pinnedLeftLive === 0) pinnedLeftLive = Date.now();
      });
      try {
        await watch.start();
        await pinnedWatch.start();
        const { t0 } = await firstWriteThenCut(watch, writer, `/q${i}/`, () => lab.isolate(cut, majority));
        await waitFor(
          "our watch to see the write made on the majority",
          () => watch.snapshot.kvs.has(`/q${i}/after`),
          {
            timeoutMs: 20_000,
            intervalMs: 100,
          },
        );
        console.log(
          `member ${i + 1} cut off: our watch saw the majority's write ${((Date.now() - t0) / 1000).toFixed(1)} s after the cut; the pinned watch without the leader requirement saw ${seenByPlain.filter((k) => k.endsWith("after")).length}`,
        );
        assert.ok(
          !seenByPlain.includes(`/q${i}/after`),
          "a watch on the cut-off member sees nothing of the majority",
        );
        await waitFor("our watch pinned to the cut-off member to leave `live`", () => pinnedLeftLive > 0, {
          timeoutMs: 20_000,
          intervalMs: 100,
        });
        console.log(
          `  our watch pinned to it left "live" ${((pinnedLeftLive - t0) / 1000).toFixed(1)} s after the cut`,
        );
      } finally {
        await pinnedWatch.close();
        oursPinned.close();
        await watch.close();
        await plainWatch.cancel().catch(() => undefined);
        plain.close();
        ours.close();
        writer.close();
        await lab.heal(cut);
      }
      await backInCluster(cut);
    });
  }

  for (const i of [0, 1, 2]) {
    it(`member ${i + 1} gone silent for every client and member (its host cut off whole): a watch that was on it moves on and sees the majority's writes`, async () => {
      const cut = lab.hosts[i]!;
      const majority = lab.hosts.filter((h) => h !== cut);
      // The watch must start on the member that goes silent: the others refuse this
      // namespace (the test's) until it is live there, with a reset, so that a pick of one of
      // them fails at once and the client picks again (a silent one would cost a watch start
      // timeout each, which doubles: too few picks in the set-up's minute). They still reach
      // each other and `cut`.
      const hide = (h: LabHost, op: "-A" | "-D") =>
        lab.exec(h, "iptables", [
          op,
          "INPUT",
          "-s",
          lab.gateway,
          "-p",
          "tcp",
          "-j",
          "REJECT",
          "--reject-with",
          "tcp-reset",
        ]);
      for (const h of majority) await hide(h, "-A");
      const ours = createEtcdClient({ hosts: lab.hosts.map(endpoint), callTimeoutMs: 1000 });
      const watch = new PrefixWatch(ours, `/s${i}/`, silent);
      const writer = createEtcdClient({ hosts: majority.map(endpoint) });
      try {
        await watch.start();
        // Each pick of a refusing member fails at once and the next is picked at random.
        await waitFor("the watch to be live on the member that goes silent", () => watch.state === "live", {
          timeoutMs: 60_000,
          intervalMs: 100,
        });
        for (const h of majority) await hide(h, "-D");
        const { t0, written } = await firstWriteThenCut(watch, writer, `/s${i}/`, () =>
          lab.isolateFully(cut),
        );
        await waitFor(
          "our watch to see the write made on the majority",
          () => watch.snapshot.kvs.has(`/s${i}/after`),
          { timeoutMs: 30_000, intervalMs: 100 },
        );
        console.log(
          `member ${i + 1} silent: the majority took a write ${((written - t0) / 1000).toFixed(1)} s after the cut; our watch saw it ${((Date.now() - t0) / 1000).toFixed(1)} s after the cut`,
        );
      } finally {
        for (const h of majority) await hide(h, "-D").catch(() => undefined);
        await watch.close();
        ours.close();
        writer.close();
        await lab.heal(cut);
      }
      await backInCluster(cut);
    });
  }
});
