import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type LabRecord, labLine, shortServerVersion, ttlFor } from "../../bench/lab-versions.js";
import { benchSpec, planOf } from "../../bench/options.js";
import { type Results, render } from "../../bench/report.js";
import { parseArgs } from "../../shared/config.js";
import {
  containerRunArgs,
  IMAGE_PATRONI,
  IMAGE_TINI,
  pgMajorOf,
} from "../../test/harness/patroni-runtime.js";

const hostLab: LabRecord = {
  parts: ["datapath", "profile"],
  runtime: "host",
  where: "processes on this host",
  patroni: "3.0.2",
  postgres: "15.14 (Debian 15.14-0+deb12u1)",
  ttl: 10,
  loopWait: 2,
};
const containerLab: LabRecord = {
  parts: ["planned", "unplanned", "latency"],
  runtime: "container",
  where: "containers of pgha/agent:dev on the host network",
  patroni: "4.0.7",
  postgres: "17.12 (Debian 17.12-0+deb13u1)",
  ttl: 20,
  loopWait: 2,
};

describe("the versions a lab measured", () => {
  it("shortens PostgreSQL's server_version to its number and keeps anything else as it is", () => {
    for (const [raw, short] of [
      ["17.12 (Debian 17.12-0+deb13u1)", "17.12"],
      ["15.14", "15.14"],
      ["18devel", "18"],
      ["  16.4 ", "16.4"],
      ["unusual", "unusual"],
    ] as const) {
      assert.equal(shortServerVersion(raw), short, raw);
    }
  });

  it("names the parts, both versions, where the members ran and the timing of Patroni's loop", () => {
    assert.equal(
      labLine(containerLab),
      "planned, unplanned, latency: Patroni 4.0.7, PostgreSQL 17.12 (containers of pgha/agent:dev on the host network; ttl 20 s, loop_wait 2 s)",
    );
    assert.match(
      labLine({ ...hostLab, patroni: null, postgres: null }),
      /Patroni unknown, PostgreSQL unknown/,
    );
  });

  it("raises the ttl to Patroni 4's least in containers and leaves the host's Patroni 3 as asked", () => {
    const table: [LabRecord["runtime"], number, number][] = [
      ["container", 10, 20],
      ["container", 20, 20],
      ["container", 30, 30],
      ["host", 10, 10],
      ["host", 30, 30],
    ];
    for (const [runtime, asked, used] of table) assert.equal(ttlFor(runtime, asked), used);
  });

  it("prints every lab's versions at the top of the report and on the parts that ran on it", () => {
    const sum = (p99: number) => ({ n: 10, p50: p99 / 2, p99, min: 1, max: p99 });
    const r: Results = {
      machine: { date: "2026-12-03T12:00:00Z", host: "h" },
      options: {},
      ttl: 20,
      labs: [hostLab, containerLab],
      errors: {},
      switchLatency: {
        summary: {
          putToWritableMs: sum(30),
          router: { putToServedMs: sum(40), putToRouteMs: sum(35), writableToServedMs: sum(10) },
          "haproxy-docs": { putToServedMs: sum(3000) },
          "haproxy-fast": { putToServedMs: sum(1000) },
        },
      },
    };
    const out = render(r);
    assert.match(
      out,
      /Versions measured .*\n {2}datapath, profile: Patroni 3\.0\.2, PostgreSQL 15\.14 \(processes/,
    );
    assert.match(out, /\n {2}planned, unplanned, latency: Patroni 4\.0\.7, PostgreSQL 17\.12 \(containers/);
    assert.match(
      out,
      /4\. Switch latency over planned switchovers on Patroni 4\.0\.7 \/ PostgreSQL 17\.12\n/,
    );
  });

  it("prints no versions line for results written before labs were recorded", () => {
    const out = render({ machine: {}, options: {}, ttl: 10, errors: {} });
    assert.doesNotMatch(out, /Versions measured/);
  });
});

describe("a harness member in a container of the agent image", () => {
  const args = containerRunArgs({
    image: "pgha/agent:dev",
    container: "pgha-bench-abc123-pg2",
    label: "pgha-bench-abc123-",
    user: { uid: 100, gid: 102 },
    clusterDir: "/tmp/patroni-x",
    memberDir: "/tmp/patroni-x/pg2",
    configFile: "/tmp/patroni-x/pg2/patroni.yml",
  });
  const value = (flag: string) => args[args.indexOf(flag) + 1];

  it("runs in the foreground on the host network as the image's postgres account", () => {
    assert.equal(args[0], "run");
    assert.ok(args.includes("--rm"));
    assert.ok(!args.includes("-d") && !args.includes("--detach"));
    assert.equal(value("--network"), "host");
    assert.equal(value("--user"), "100:102");
    assert.equal(value("--name"), "pgha-bench-abc123-pg2");
    assert.equal(value("--label"), "pgha.test=pgha-bench-abc123-");
  });

  it("mounts the cluster's directory at the same path, so the rendered config's paths hold", () => {
    assert.equal(value("--volume"), "/tmp/patroni-x:/tmp/patroni-x");
    assert.equal(value("--env"), "HOME=/tmp/patroni-x/pg2");
  });

  it("replaces the agent's entrypoint with tini running the image's Patroni launcher on the config", () => {
    assert.equal(value("--entrypoint"), IMAGE_TINI);
    const image = args.indexOf("pgha/agent:dev");
    assert.deepEqual(args.slice(image + 1), ["--", IMAGE_PATRONI, "/tmp/patroni-x/pg2/patroni.yml"]);
  });

  it("reads the image's PostgreSQL major from its environment", () => {
    assert.equal(pgMajorOf(["PATH=/usr/bin", "PG_MAJOR=17", "PGDATA=/data/pgdata"]), "17");
    assert.equal(pgMajorOf(["PATH=/usr/bin"]), null);
    assert.equal(pgMajorOf(["PG_MAJOR=seventeen"]), null);
  });
});

describe("the benchmark's failover lab", () => {
  const lab = (argv: string[]) => {
    const r = parseArgs(benchSpec, argv, {});
    assert.equal(r.kind, "config");
    return r.kind === "config" ? planOf(r.config).failoverLab : null;
  };

  it("is the agent image's containers unless --failover-lab says host", () => {
    assert.equal(lab([]), "container");
    assert.equal(lab(["--failover-lab", "host"]), "host");
    assert.equal(lab(["--failover-lab=container"]), "container");
    assert.throws(() => lab(["--failover-lab", "vm"]), /failover-lab/);
  });
});
