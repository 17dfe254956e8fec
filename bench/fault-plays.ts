/**
 * Part 7's faults, each as two steps: play it, then wait until the stack serves again and undo
 * it. The steps are the e2e suite's (test/e2e/no-single-point-of-failure.test.ts).
 */
import { type Agent, type ComposeStack, ETCD_MEMBERS } from "../test/harness/compose.js";
import { docker } from "../test/harness/docker.js";
import { run, waitFor } from "../test/harness/proc.js";
import { ETCD_OUTAGE_MS, type Fault, LEADER_CUT_MS } from "./fault-figures.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Play {
  /** Plays the fault; returns when its command has. */
  readonly inject: () => Promise<void>;
  /** Waits until the stack serves again (and undoes the fault). */
  readonly recovered: () => Promise<void>;
  readonly detail: string;
}

export async function containerPid(container: string): Promise<number> {
  return Number(await docker(["inspect", "-f", "{{.State.Pid}}", container]));
}

async function ipOfContainer(container: string): Promise<string> {
  return docker(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container]);
}

async function newLeaderThan(stack: ComposeStack, old: Agent, timeoutMs: number): Promise<void> {
  await waitFor("a new leader", async () => ((await stack.leader().catch(() => null)) ?? old) !== old, {
    timeoutMs,
    intervalMs: 500,
  });
}

/** How each fault is played and undone: the e2e suite's steps (test/e2e/no-single-point-of-failure.test.ts). */
export async function playOf(stack: ComposeStack, fault: Fault): Promise<Play> {
  switch (fault) {
    case "leader-stop":
    case "leader-kill": {
      const leader = (await stack.leader())!;
      const container = `${stack.project}-${leader}`;
      return {
        detail: `leader ${leader}`,
        inject: () =>
          (fault === "leader-stop"
            ? docker(["stop", "-t", "60", container], { timeoutMs: 90_000 })
            : docker(["kill", container])
          ).then(() => undefined),
        recovered: async () => {
          await newLeaderThan(stack, leader, 90_000);
          await docker(["start", container]);
        },
      };
    }
    case "etcd-kill": {
      const member = await stack.etcdLeader();
      const container = await stack.container(member);
      return {
        detail: `raft leader ${member}`,
        inject: () => docker(["kill", container]).then(() => undefined),
        recovered: async () => {
          await sleep(5_000);
          await docker(["start", container]);
        },
      };
    }
    case "etcd-all-stop": {
      const containers = await Promise.all(ETCD_MEMBERS.map((m) => stack.container(m)));
      return {
        detail: `docker stop -t 5 of ${ETCD_MEMBERS.join(", ")}, started again ${ETCD_OUTAGE_MS / 1000} s later`,
        inject: () => docker(["stop", "-t", "5", ...containers]).then(() => undefined),
        recovered: async () => {
          await sleep(ETCD_OUTAGE_MS);
          await docker(["start", ...containers]);
        },
      };
    }
    case "leader-cut": {
      const leader = (await stack.leader())!;
      const pid = await containerPid(`${stack.project}-${leader}`);
      const etcdIps = await Promise.all(
        ETCD_MEMBERS.map(async (m) => ipOfContainer(await stack.container(m))),
      );
      const iptables = (args: string[]) => run("nsenter", ["-t", String(pid), "-n", "iptables", ...args]);
      const rules = (op: "-I" | "-D") =>
        etcdIps.flatMap((ip) => [
          [op, "OUTPUT", "-d", ip, "-j", "DROP"],
          [op, "INPUT", "-s", ip, "-j", "DROP"],
        ]);
      return {
        detail: `leader ${leader}: iptables DROP to and from ${etcdIps.join(", ")} in its network namespace`,
        inject: async () => {
          for (const r of rules("-I")) await iptables(r);
        },
        recovered: async () => {
          await sleep(LEADER_CUT_MS);
          for (const r of rules("-D")) await iptables(r);
        },
      };
    }
    case "router-worker-kill": {
      const router = await stack.container("router");
      const workers = async () =>
        ((await (await fetch(`${stack.adminUrl}/routes`)).json()) as { workers: { pid: number }[] }).workers;
      const victim = (await workers())[0]!.pid;
      return {
        detail: `worker pid ${victim} (in the router's container)`,
        // The image has no kill(1): node sends the signal.
        inject: () =>
          docker(["exec", router, "node", "-e", `process.kill(${victim}, "SIGKILL")`]).then(() => undefined),
        recovered: () =>
          waitFor(
            "the supervisor's new worker",
            async () => {
              const w = await workers();
              return w.length >= 2 && !w.some((x) => x.pid === victim);
            },
            { timeoutMs: 30_000 },
          ).then(() => undefined),
      };
    }
    case "registrator-kill": {
      const registrator = await stack.container("registrator");
      const pid = await containerPid(registrator);
      return {
        detail: `pid ${pid}; Docker restarts it`,
        inject: async () => {
          process.kill(pid, "SIGKILL");
        },
        recovered: () =>
          waitFor(
            "Docker to restart the registrator",
            async () =>
              (await docker(["inspect", "-f", "{{.State.Running}} {{.RestartCount}}", registrator])) !==
              "true 0",
            { timeoutMs: 30_000 },
          ).then(() => undefined),
      };
    }
  }
}
