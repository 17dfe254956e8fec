/**
 * The agent's start-up sequence (agent/startup.ts) driven with small in-memory parts: the
 * order of its effects and the process's exit code. These fakes stand for our own parts,
 * not for a real peer: what is proved is the wiring — a bad configuration exits 2 before
 * anything else happens, a data directory of another PostgreSQL major exits 4 before
 * anything touches it, a discovery that fails exits 3, a stop signal while waiting for
 * discovery exits 0, the pre_promote answer listens before Patroni starts, Patroni's own
 * exit code is the process's, and a stop sequence that began is awaited before it is.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseAgentConfig } from "../../agent/config.js";
import { type DataDirVerdict, dataDirVerdict } from "../../agent/data-dir.js";
import { DiscoveryError, type NodeAddresses } from "../../agent/discovery.js";
import {
  type AgentParts,
  type HandledSignal,
  type ParsedConfig,
  runAgent,
  type StartupDeps,
} from "../../agent/startup.js";
import { ConfigError } from "../../shared/errors.js";
import { createLogger } from "../../shared/logger.js";

const ENV = {
  NAME: "pg1",
  PATRONI_SCOPE: "demo",
  ETCD_HOST_PORT: "127.0.0.1:2379",
  DOCKER_HOSTNAME: "host1",
  POSTGRES_USERNAME: "admin",
  POSTGRES_PASSWORD: "a",
  REPLICATION_PASSWORD: "r",
  SUPERUSER_PASSWORD: "s",
  RESTAPI_PASSWORD: "p",
  PG_MAJOR: "17",
};
const ADDRESSES: NodeAddresses = {
  postgres: { host: "10.0.0.1", port: 40000 },
  api: { host: "10.0.0.1", port: 40001 },
};

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

interface Rig {
  readonly deps: StartupDeps;
  /** Every effect, in the order it happened. */
  readonly effects: string[];
  readonly out: { stdout: string; stderr: string };
  readonly logs: Record<string, unknown>[];
  /** Sends a signal to the agent as the process would. */
  signal(s: HandledSignal): void;
  /** Patroni exits with this code. */
  exitPatroni(code: number): void;
  readonly promotionCheckStarted: ReturnType<typeof deferred<void>>;
  readonly settled: ReturnType<typeof deferred<void>>;
}

function rig(
  o: {
    parse?: () => ParsedConfig;
    discover?: (abort: AbortSignal) => Promise<NodeAddresses>;
    /** The data directory's PG_VERSION (null: none yet). */
    pgVersion?: string | null;
    holdPromotionCheck?: boolean;
    holdSettled?: boolean;
  } = {},
): Rig {
  const effects: string[] = [];
  const out = { stdout: "", stderr: "" };
  const logs: Record<string, unknown>[] = [];
  let handler: ((s: HandledSignal) => void) | null = null;
  const patroni = deferred<number>();
  const promotionCheckStarted = deferred();
  const settled = deferred();
  if (!o.holdPromotionCheck) promotionCheckStarted.resolve();
  if (!o.holdSettled) settled.resolve();
  const step =
    <T>(name: string, value: T) =>
    () => {
      effects.push(name);
      return value;
    };
  const parts: AgentParts = {
    promotionCheck: {
      start: async () => {
        effects.push("promotion check: start");
        await promotionCheckStarted.promise;
        effects.push("promotion check: listening");
      },
      close: step("promotion check: close", Promise.resolve()),
    },
    fenceKeeper: {
      start: step("fence keeper: start", undefined),
      stop: step("fence keeper: stop", Promise.resolve()),
    },
    leaderAway: {
      start: step("etcd leader away: start", undefined),
      stop: step("etcd leader away: stop", Promise.resolve()),
    },
    supervisor: {
      run: step("patroni: run", patroni.promise),
      settled: async () => {
        effects.push("stop sequence: awaited");
        await settled.promise;
        effects.push("stop sequence: done");
      },
      onStopSignal: (s) => effects.push(`patroni: stop signal ${s}`),
      forward: (s) => effects.push(`patroni: forward ${s}`),
    },
    startBackups: async () => {
      effects.push("backups: start");
      return { stop: step("backups: stop", Promise.resolve()) };
    },
    close: step("etcd: close", undefined),
  };
  const deps: StartupDeps = {
    parseConfig:
      o.parse ??
      (() => {
        effects.push("config");
        return parseAgentConfig([], ENV);
      }),
    stdout: (t) => {
      out.stdout += t;
    },
    stderr: (t) => {
      out.stderr += t;
    },
    createLog: () =>
      createLogger({ name: "agent", level: "info" }, { write: (l) => logs.push(JSON.parse(l)) }),
    checkDataDir: (cfg): DataDirVerdict => {
      effects.push("data directory: checked");
      return dataDirVerdict(cfg.dataDir, o.pgVersion ?? null, cfg.pgMajor);
    },
    onSignal: (h) => {
      effects.push("signals: subscribed");
      handler = h;
    },
    discover: (_cfg, _log, abort) => {
      effects.push("discovery");
      return o.discover ? o.discover(abort) : Promise.resolve(ADDRESSES);
    },
    writeFiles: (_cfg, addresses) => {
      assert.deepEqual(addresses, ADDRESSES);
      effects.push("files: written");
      return null;
    },
    assemble: () => {
      effects.push("parts: assembled");
      return parts;
    },
  };
  return {
    deps,
    effects,
    out,
    logs,
    signal: (s) => handler?.(s),
    exitPatroni: (code) => patroni.resolve(code),
    promotionCheckStarted,
    settled,
  };
}

describe("agent start-up: exit codes", () => {
  it("a configuration error prints its one line and exits 2 before anything else", async () => {
    const r = rig({
      parse: () => {
        throw new ConfigError("name", "agent: missing required -name or NAME: expected a non-empty value");
      },
    });
    assert.equal(await runAgent(r.deps), 2);
    assert.equal(r.out.stderr, "agent: missing required -name or NAME: expected a non-empty value\n");
    assert.deepEqual(r.effects, []);
  });

  it("--help prints the usage and exits 0", async () => {
    const r = rig({ parse: () => ({ kind: "help", text: "Usage: agent [options]\n" }) });
    assert.equal(await runAgent(r.deps), 0);
    assert.equal(r.out.stdout, "Usage: agent [options]\n");
    assert.deepEqual(r.effects, []);
  });

  it("another error while parsing is not a configuration error: it propagates", async () => {
    const r = rig({
      parse: () => {
        throw new TypeError("bug");
      },
    });
    await assert.rejects(runAgent(r.deps), TypeError);
  });

  it("a data directory of another PostgreSQL major: one line, exit 4, before discovery and any file", async () => {
    const r = rig({ pgVersion: "15\n" });
    assert.equal(await runAgent(r.deps), 4);
    assert.equal(
      r.out.stderr,
      'agent: the data directory /data/pgdata was created by PostgreSQL 15, this image runs PostgreSQL 17: it is left as it is and not started. Move the data with pg_dumpall from a PostgreSQL 15 image and restore it into a new PostgreSQL 17 cluster (agent/README.md, "Moving to a new PostgreSQL major")\n',
    );
    assert.deepEqual(r.effects, ["config", "data directory: checked"]);
  });

  it("a data directory of the image's major starts as usual", async () => {
    const r = rig({ pgVersion: "17\n" });
    const code = runAgent(r.deps);
    await settle();
    r.exitPatroni(0);
    assert.equal(await code, 0);
    assert.deepEqual(r.effects.slice(0, 4), [
      "config",
      "data directory: checked",
      "signals: subscribed",
      "discovery",
    ]);
  });

  it("discovery that fails exits 3, logs the keys it waited for, and writes nothing", async () => {
    const keys = {
      postgres: "/postgresql-patroni/host1:pg1:5432",
      api: "/postgresql-patroni-api/host1:pg1:8008",
    };
    const r = rig({ discover: () => Promise.reject(new DiscoveryError("no registrator keys", { keys })) });
    assert.equal(await runAgent(r.deps), 3);
    assert.deepEqual(r.effects, ["config", "data directory: checked", "signals: subscribed", "discovery"]);
    const line = r.logs.find((l) => l["msg"] === "no registrator keys");
    assert.deepEqual(line?.["keys"], keys);
    assert.equal(line?.["level"], "error");
  });

  it("a stop signal while waiting for discovery exits 0 and starts nothing", async () => {
    const r = rig({
      discover: (abort) =>
        new Promise((_, reject) => abort.addEventListener("abort", () => reject(new Error("aborted")))),
    });
    const code = runAgent(r.deps);
    await settle();
    r.signal("SIGHUP"); // nothing to reload yet: ignored
    r.signal("SIGTERM");
    assert.equal(await code, 0);
    assert.deepEqual(r.effects, ["config", "data directory: checked", "signals: subscribed", "discovery"]);
  });

  it("a stop signal while the pre_promote answer starts exits 0 without running Patroni", async () => {
    const r = rig({ holdPromotionCheck: true });
    const code = runAgent(r.deps);
    await settle();
    r.signal("SIGINT");
    r.promotionCheckStarted.resolve();
    assert.equal(await code, 0);
    assert.ok(!r.effects.includes("patroni: run"), r.effects.join(", "));
  });

  it("another discovery error propagates (main logs it and exits 1)", async () => {
    const r = rig({ discover: () => Promise.reject(new Error("etcd client bug")) });
    await assert.rejects(runAgent(r.deps), /etcd client bug/);
  });
});

describe("agent start-up: the order of effects", () => {
  it("files, then the pre_promote answer listening, then Patroni; Patroni's exit code is the process's", async () => {
    const r = rig({ holdPromotionCheck: true });
    let result: number | null = null;
    const code = runAgent(r.deps).then((c) => {
      result = c;
      return c;
    });
    await settle();
    assert.ok(!r.effects.includes("patroni: run"), "Patroni waits for the pre_promote answer to listen");
    r.promotionCheckStarted.resolve();
    await settle();
    assert.equal(result, null, "the agent lives while Patroni runs");
    r.exitPatroni(7);
    assert.equal(await code, 7);
    assert.deepEqual(r.effects, [
      "config",
      "data directory: checked",
      "signals: subscribed",
      "discovery",
      "files: written",
      "parts: assembled",
      "promotion check: start",
      "promotion check: listening",
      "patroni: run",
      "fence keeper: start",
      "etcd leader away: start",
      "backups: start",
      "stop sequence: awaited",
      "stop sequence: done",
      "fence keeper: stop",
      "etcd leader away: stop",
      "backups: stop",
      "promotion check: close",
      "etcd: close",
    ]);
  });

  it("once Patroni runs, stop signals go to its supervisor and SIGHUP is passed on", async () => {
    const r = rig();
    const code = runAgent(r.deps);
    await settle();
    r.signal("SIGHUP");
    r.signal("SIGTERM");
    r.signal("SIGINT");
    r.exitPatroni(0);
    assert.equal(await code, 0);
    const after = r.effects.slice(r.effects.indexOf("backups: start") + 1);
    assert.deepEqual(after.slice(0, 3), [
      "patroni: forward SIGHUP",
      "patroni: stop signal SIGTERM",
      "patroni: stop signal SIGINT",
    ]);
  });

  it("after Patroni exits, the stop sequence is awaited before the exit code is returned", async () => {
    const r = rig({ holdSettled: true });
    let result: number | null = null;
    const code = runAgent(r.deps).then((c) => {
      result = c;
      return c;
    });
    await settle();
    r.signal("SIGTERM");
    r.exitPatroni(0);
    await settle();
    await settle();
    assert.equal(result, null, "still stopping");
    assert.equal(r.effects.at(-1), "stop sequence: awaited");
    assert.ok(!r.effects.includes("fence keeper: stop"), "nothing stops before the stop sequence is done");
    r.settled.resolve();
    assert.equal(await code, 0);
    assert.deepEqual(r.effects.slice(r.effects.indexOf("stop sequence: done")), [
      "stop sequence: done",
      "fence keeper: stop",
      "etcd leader away: stop",
      "backups: stop",
      "promotion check: close",
      "etcd: close",
    ]);
  });
});
