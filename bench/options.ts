/** The benchmark's command line, and the figures --quick changes. */
import { fileURLToPath } from "node:url";
import { type ConfigOf, opt, type ProgramSpec, valueOption } from "../shared/config.js";
import { ParseFailure } from "../shared/errors.js";
import type { RuntimeKind } from "../test/harness/patroni-runtime.js";
import { FF_MODES, FF_STACKS, type FfMode, type FfStack } from "./fast-failover-modes.js";
import { FAULTS, type Fault } from "./fault-figures.js";
import type { Workload } from "./pgbench.js";

export const PARTS = [
  "datapath",
  "profile",
  "memory",
  "planned",
  "unplanned",
  "latency",
  "registrator",
  "faults",
  "fastfailover",
  "hosts",
] as const;
export type Part = (typeof PARTS)[number];
/**
 * What runs without --parts: all but the Docker stack's fast-failover part (about 15 minutes on
 * its own) and the three Docker hosts' part (about 5).
 */
export const DEFAULT_PARTS: readonly Part[] = PARTS.filter((p) => p !== "fastfailover" && p !== "hosts");

export const WORKLOADS: readonly Workload[] = ["select-only", "tpcb-like"];

/** The parts whose figures are Patroni's and PostgreSQL's behaviour: they run on --failover-lab. */
export const FAILOVER_PARTS: readonly Part[] = ["planned", "unplanned", "latency"];
/** The parts on the host's loopback lab whatever --failover-lab says. */
export const HOST_LAB_PARTS: readonly Part[] = ["datapath", "profile", "memory"];
export const LAB_RUNTIMES: readonly RuntimeKind[] = ["container", "host"];

/** The last commit before the router became a supervisor and workers (the memory part's "before"). */
const MEMORY_BEFORE = "1b90c8bb037e42e2fdbe74174a9191b718088755";
const DEFAULT_RESULTS = fileURLToPath(new URL("../../bench/results/", import.meta.url));

function intList(raw: string): readonly number[] {
  const xs = raw.split(",").map((s) => s.trim());
  if (xs.some((x) => !/^\d+$/.test(x) || Number(x) < 1)) throw new ParseFailure();
  return Object.freeze(xs.map(Number));
}

const benchOptions = {
  parts: valueOption(
    {
      flag: "parts",
      description: "which parts to run, comma-separated",
      accepted: `a comma-separated list of ${PARTS.join(", ")}`,
      metavar: "PART[,...]",
      default: DEFAULT_PARTS,
      defaultLabel: DEFAULT_PARTS.join(","),
    },
    (raw) => {
      const xs = raw.split(",").map((s) => s.trim());
      if (xs.length === 0 || xs.some((x) => !(PARTS as readonly string[]).includes(x)))
        throw new ParseFailure();
      return Object.freeze(xs as Part[]);
    },
  ),
  quick: opt.bool({
    flag: "quick",
    description: "shorter rounds and fewer repetitions (a few minutes in all)",
  }),
  rounds: opt.int({
    flag: "rounds",
    description: "data path rounds per target (0: 3, or 2 with --quick)",
    default: 0,
    min: 0,
    max: 100,
  }),
  seconds: opt.int({
    flag: "seconds",
    description: "seconds per pgbench round (0: 5, or 2 with --quick)",
    default: 0,
    min: 0,
    max: 600,
  }),
  clients: valueOption(
    {
      flag: "clients",
      description: "pgbench client counts",
      accepted: "a comma-separated list of positive integers",
      metavar: "N[,...]",
      default: Object.freeze([1, 8, 64]) as readonly number[],
      defaultLabel: "1,8,64",
    },
    intList,
  ),
  workloads: valueOption(
    {
      flag: "workloads",
      description: "pgbench workloads of the data path",
      accepted: `a comma-separated list of ${WORKLOADS.join(", ")}`,
      metavar: "W[,...]",
      default: WORKLOADS,
      defaultLabel: WORKLOADS.join(","),
    },
    (raw) => {
      const xs = raw.split(",").map((s) => s.trim());
      if (xs.length === 0 || xs.some((x) => !(WORKLOADS as readonly string[]).includes(x)))
        throw new ParseFailure();
      return Object.freeze(xs as Workload[]);
    },
  ),
  scale: opt.int({ flag: "scale", description: "pgbench scale factor", default: 1, min: 1, max: 1000 }),
  switchovers: opt.int({
    flag: "switchovers",
    description: "planned switchovers under writers (0: 3, or 1 with --quick)",
    default: 0,
    min: 0,
    max: 100,
  }),
  failovers: opt.int({
    flag: "failovers",
    description: "kill -9 failovers under writers (0: 2, or 1 with --quick)",
    default: 0,
    min: 0,
    max: 100,
  }),
  latencySwitchovers: opt.int({
    flag: "latency-switchovers",
    description: "switchovers for the switch latency (0: 20, or 10 with --quick)",
    default: 0,
    min: 0,
    max: 1000,
  }),
  registratorStarts: opt.int({
    flag: "registrator-starts",
    description: "containers started one by one (0: 100, or 30 with --quick)",
    default: 0,
    min: 0,
    max: 1000,
  }),
  registratorSync: opt.int({
    flag: "registrator-sync",
    description: "containers at the registrator's start (0: 200, or 60 with --quick)",
    default: 0,
    min: 0,
    max: 1000,
  }),
  ffKills: opt.int({
    flag: "ff-kills",
    description: "leader containers killed per mode in the fastfailover part (0: 10, or 3 with --quick)",
    default: 0,
    min: 0,
    max: 200,
  }),
  ffStack: valueOption(
    {
      flag: "ff-stack",
      description:
        "the stack of the fastfailover part: single (as ./pgha up runs it, -internal) or multihost (docker-compose.multihost.yml, -ip)",
      accepted: "single or multihost",
      metavar: "STACK",
      default: "single" as FfStack,
    },
    (raw) => {
      if (!(FF_STACKS as readonly string[]).includes(raw)) throw new ParseFailure();
      return raw as FfStack;
    },
  ),
  ffModes: valueOption(
    {
      flag: "ff-modes",
      description:
        "the fastfailover part's registrator modes: release (-release-dead-leaders), ttl (flag off)",
      accepted: "a comma-separated list of release, ttl",
      metavar: "MODE[,...]",
      default: FF_MODES as readonly FfMode[],
      defaultLabel: FF_MODES.join(","),
    },
    (raw) => {
      const xs = raw.split(",").map((x) => x.trim());
      if (xs.length === 0 || xs.some((x) => !(FF_MODES as readonly string[]).includes(x)))
        throw new ParseFailure();
      return Object.freeze(FF_MODES.filter((m) => xs.includes(m)));
    },
  ),
  memoryClients: valueOption(
    {
      flag: "memory-clients",
      description:
        "connected idle clients per memory figure (each needs 2 descriptors in a proxy; 20 000 per process here)",
      accepted: "a comma-separated list of positive integers up to 9000",
      metavar: "N[,...]",
      default: Object.freeze([1000, 8000]) as readonly number[],
      defaultLabel: "1000,8000",
    },
    (raw) => {
      const xs = intList(raw);
      if (xs.some((x) => x > 9000)) throw new ParseFailure("at most 9000");
      return xs;
    },
  ),
  memoryBefore: opt.string({
    flag: "memory-before",
    description:
      "the commit whose router the memory part measures beside this one (default: the last before the router's workers); off to skip",
    default: MEMORY_BEFORE,
  }),
  heldClients: opt.int({
    flag: "held-clients",
    description: "clients held by the router with no primary",
    default: 10_000,
    min: 0,
    max: 15_000,
  }),
  profileSeconds: opt.int({
    flag: "profile-seconds",
    description: "seconds of pgbench under the CPU profiler (0: 15, or 8 with --quick)",
    default: 0,
    min: 0,
    max: 600,
  }),
  faults: valueOption(
    {
      flag: "faults",
      description: "the faults of the faults part, in this order (one round of each)",
      accepted: `a comma-separated list of ${FAULTS.join(", ")}`,
      metavar: "FAULT[,...]",
      default: FAULTS as readonly Fault[],
      defaultLabel: FAULTS.join(","),
    },
    (raw) => {
      const xs = raw.split(",").map((s) => s.trim());
      if (xs.length === 0 || xs.some((x) => !(FAULTS as readonly string[]).includes(x)))
        throw new ParseFailure();
      return Object.freeze(xs as Fault[]);
    },
  ),
  faultRounds: opt.int({
    flag: "fault-rounds",
    description: "rounds of each fault in the faults part, interleaved (about 5 minutes a round here)",
    default: 1,
    min: 1,
    max: 20,
  }),
  ttl: opt.int({
    flag: "ttl",
    description: "Patroni's ttl for the cluster, and for the faults part's compose stack (s)",
    default: 10,
    min: 5,
    max: 120,
  }),
  failoverLab: valueOption(
    {
      flag: "failover-lab",
      description:
        "where the planned, unplanned and latency parts run Patroni: container (the agent image, Patroni 4 and PostgreSQL 17, on the host network; ttl at least 20 s) or host (this host's Patroni 3.0.2 and PostgreSQL 15)",
      accepted: "container or host",
      metavar: "LAB",
      default: "container" as RuntimeKind,
    },
    (raw) => {
      if (!(LAB_RUNTIMES as readonly string[]).includes(raw)) throw new ParseFailure();
      return raw as RuntimeKind;
    },
  ),
  walSegmentSize: opt.int({
    flag: "wal-segment-size",
    description: "WAL segment size (MB) the cluster is created with, as the agent's WAL_SEGMENT_SIZE",
    default: 16,
    min: 1,
    max: 1024,
  }),
  out: opt.string({
    flag: "out",
    description: "directory for the JSON results",
    default: DEFAULT_RESULTS,
    metavar: "DIR",
  }),
};

export const benchSpec: ProgramSpec<typeof benchOptions, undefined> = {
  program: "bench",
  summary:
    "Benchmarks the router against direct connections, HAProxy 2.6 and a naive pipe proxy on a 3-node Patroni cluster on loopback (its members containers of the agent image for the switchover and failover parts; and the registrator against the real dockerd, and the compose stack under faults beside HAProxy); prints a table and writes JSON.",
  options: benchOptions,
  epilog: [
    "Examples:",
    "  node dist/bench/run.js                       # everything (about 14 minutes here)",
    "  node dist/bench/run.js --quick               # a few minutes",
    "  node dist/bench/run.js --parts datapath,profile --rounds 5",
    "  node dist/bench/run.js --parts datapath --workloads select-only --clients 1,8",
    "  node dist/bench/run.js --parts faults --faults etcd-kill,router-worker-kill",
    "  node dist/bench/run.js --parts planned,unplanned,latency --failover-lab host   # on Patroni 3.0.2",
  ].join("\n"),
};

export type BenchConfig = ConfigOf<typeof benchOptions>;

export interface Plan {
  readonly parts: readonly Part[];
  readonly quick: boolean;
  readonly rounds: number;
  readonly seconds: number;
  readonly clients: readonly number[];
  readonly workloads: readonly Workload[];
  readonly scale: number;
  readonly switchovers: number;
  readonly failovers: number;
  readonly latencySwitchovers: number;
  readonly registratorStarts: number;
  readonly registratorSync: number;
  readonly ffKills: number;
  readonly ffStack: FfStack;
  readonly ffModes: readonly FfMode[];
  readonly memoryClients: readonly number[];
  readonly heldClients: number;
  /** A commit, or null (off). */
  readonly memoryBefore: string | null;
  readonly profileSeconds: number;
  readonly faults: readonly Fault[];
  readonly faultRounds: number;
  readonly ttl: number;
  readonly failoverLab: RuntimeKind;
  readonly walSegmentSize: number;
  readonly out: string;
}

/** Pure: the figures of this run; a 0 means "the default for the mode" (--quick or full). */
export function planOf(c: BenchConfig): Plan {
  const pick = (given: number, full: number, quick: number) => (given > 0 ? given : c.quick ? quick : full);
  return Object.freeze({
    parts: PARTS.filter((p) => c.parts.includes(p)),
    quick: c.quick,
    rounds: pick(c.rounds, 3, 2),
    seconds: pick(c.seconds, 5, 2),
    clients: c.clients,
    workloads: WORKLOADS.filter((w) => c.workloads.includes(w)),
    scale: c.scale,
    switchovers: pick(c.switchovers, 3, 1),
    failovers: pick(c.failovers, 2, 1),
    latencySwitchovers: pick(c.latencySwitchovers, 20, 10),
    registratorStarts: pick(c.registratorStarts, 100, 30),
    registratorSync: pick(c.registratorSync, 200, 60),
    ffKills: pick(c.ffKills, 10, 3),
    ffStack: c.ffStack,
    ffModes: c.ffModes,
    memoryClients: c.memoryClients,
    heldClients: c.heldClients,
    memoryBefore: c.memoryBefore === "off" ? null : c.memoryBefore,
    profileSeconds: pick(c.profileSeconds, 15, 8),
    faults: c.faults,
    faultRounds: c.faultRounds,
    ttl: c.ttl,
    failoverLab: c.failoverLab,
    walSegmentSize: c.walSegmentSize,
    out: c.out,
  });
}
