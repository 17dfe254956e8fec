/**
 * The agent image's ports as the registrator publishes them, and as Prometheus finds them.
 * The image's labels and exposed ports are read from agent/Dockerfile; the registrator's
 * service model turns them into keys; the agent's discovery must still find its PostgreSQL
 * and REST keys (the metrics port 8009 is a third service beside them); the registrator's
 * /sd lists the keys; and prometheus.yml's relabelling keeps each agent's metrics and
 * Patroni targets of this compose project, named pg1:8009 and pg1:8008 as the alerts expect.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { DEFAULT_METRICS_LISTEN } from "../../agent/backup/options.js";
import type { AddressSource } from "../../agent/config.js";
import { discoveryKeys } from "../../agent/discovery.js";
import { DEFAULT_SERVICE_5432, DEFAULT_SERVICE_8008 } from "../../agent/options.js";
import { targetGroups } from "../../registrator/http-sd.js";
import { type ModelOptions, type Service, servicesFor } from "../../registrator/service-model.js";
import { parseHostPort } from "../../shared/host-port.js";
import { deepFreeze } from "../harness/fixtures.js";

const ROOT = new URL("../../../", import.meta.url).pathname;
const dockerfile = readFileSync(join(ROOT, "agent", "Dockerfile"), "utf8").replace(/\\\n/g, " ");

/** `LABEL a=b c="d e"` and `EXPOSE 1 2` lines of the Dockerfile, continuation lines joined. */
function imageLabels(): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [, rest] of dockerfile.matchAll(/^LABEL\s+(.+)$/gm)) {
    for (const m of rest!.matchAll(/([A-Za-z0-9_.-]+)=("([^"]*)"|\S+)/g)) {
      labels[m[1]!] = m[3] ?? m[2]!;
    }
  }
  return labels;
}
function exposedPorts(): number[] {
  return [...dockerfile.matchAll(/^EXPOSE\s+(.+)$/gm)].flatMap((m) =>
    m[1]!
      .trim()
      .split(/\s+/)
      .map((p) => Number(p.split("/")[0])),
  );
}

const METRICS_PORT = parseHostPort(DEFAULT_METRICS_LISTEN).port;
const METRICS_SERVICE = "pgha-agent-metrics";
const HOST_IP = "192.168.99.101";

/** What `docker inspect` says of an agent container of the image, as the registrator reads it. */
function agentInspect(o: {
  name: string;
  env?: string[];
  published?: Record<number, number>;
  network?: { name: string; ip: string };
}): unknown {
  const ports: Record<string, unknown> = {};
  for (const p of exposedPorts()) {
    const host = o.published?.[p];
    ports[`${p}/tcp`] = host === undefined ? null : [{ HostIp: HOST_IP, HostPort: String(host) }];
  }
  return deepFreeze({
    Id: `${o.name}-id`,
    Name: `/${o.name}`,
    Config: {
      Image: "pgha/agent:dev",
      Env: o.env ?? [],
      Labels: imageLabels(),
      ExposedPorts: Object.fromEntries(exposedPorts().map((p) => [`${p}/tcp`, {}])),
    },
    HostConfig: { NetworkMode: o.network?.name ?? "default" },
    NetworkSettings: {
      Ports: ports,
      Networks: o.network ? { [o.network.name]: { IPAddress: o.network.ip } } : {},
    },
  });
}

type Registry = Extract<AddressSource, { kind: "registry" }>;
function agentKeys(hostname: string, containerName: string, prefix: string) {
  const src: Registry = {
    kind: "registry",
    dockerHostname: hostname,
    containerName,
    prefix,
    service5432: DEFAULT_SERVICE_5432,
    service8008: DEFAULT_SERVICE_8008,
    timeoutSeconds: 120,
  };
  return discoveryKeys(src);
}

function byPort(services: readonly Service[]): Map<number, Service> {
  return new Map(services.map((s) => [s.exposedPort, s]));
}

const multiHost: ModelOptions = Object.freeze({
  hostname: HOST_IP,
  prefix: "",
  hostIp: HOST_IP,
  internal: false,
  explicit: false,
  tags: Object.freeze([]),
});
const singleHost: ModelOptions = Object.freeze({
  hostname: "local",
  prefix: "",
  internal: true,
  explicit: false,
  tags: Object.freeze([]),
});

describe("the agent image's registration", () => {
  it("exposes and names PostgreSQL, the REST API and the agent's metrics port", () => {
    assert.deepEqual(
      exposedPorts().sort((a, b) => a - b),
      [5432, 8008, METRICS_PORT],
    );
    const labels = imageLabels();
    assert.equal(labels["SERVICE_5432_NAME"], DEFAULT_SERVICE_5432, "discovery's default name");
    assert.equal(labels["SERVICE_8008_NAME"], DEFAULT_SERVICE_8008, "discovery's default name");
    assert.equal(labels[`SERVICE_${METRICS_PORT}_NAME`], METRICS_SERVICE);
  });

  const rows: {
    title: string;
    options: ModelOptions;
    inspect: unknown;
    want: Record<number, string | null>;
    skipped?: string[];
  }[] = [
    {
      title: "multi-host: every port published on the host's IP (the overlay)",
      options: multiHost,
      inspect: agentInspect({ name: "pgha-pg1", published: { 5432: 40000, 8008: 40001, 8009: 40002 } }),
      want: { 5432: `${HOST_IP}:40000`, 8008: `${HOST_IP}:40001`, 8009: `${HOST_IP}:40002` },
    },
    {
      title: "docker run -p ::5432 -p ::8008 (the walkthrough): the metrics port is left out",
      options: multiHost,
      inspect: agentInspect({ name: "john", published: { 5432: 40000, 8008: 40001 } }),
      want: { 5432: `${HOST_IP}:40000`, 8008: `${HOST_IP}:40001`, 8009: null },
      skipped: ["8009/tcp not-published"],
    },
    {
      title: "single host, -internal: the container's address on the stack's network",
      options: singleHost,
      inspect: agentInspect({ name: "pgha-pg2", network: { name: "pgha_pgha", ip: "172.20.0.5" } }),
      want: { 5432: "172.20.0.5:5432", 8008: "172.20.0.5:8008", 8009: "172.20.0.5:8009" },
    },
    {
      title: "a plain SERVICE_NAME in the environment renames none of the labelled ports",
      options: singleHost,
      inspect: agentInspect({
        name: "pgha-pg3",
        env: ["SERVICE_NAME=custom", "SERVICE_TAGS=a"],
        network: { name: "pgha_pgha", ip: "172.20.0.6" },
      }),
      want: { 5432: "172.20.0.6:5432", 8008: "172.20.0.6:8008", 8009: "172.20.0.6:8009" },
    },
  ];
  for (const r of rows) {
    it(`${r.title}: discovery finds the same two keys`, () => {
      const result = servicesFor(r.inspect, r.options);
      const services = byPort(result.services);
      const name = ((r.inspect as { Name: string }).Name ?? "").slice(1);
      const keys = agentKeys(r.options.hostname, name, r.options.prefix);
      assert.equal(services.get(5432)?.key, keys.postgres);
      assert.equal(services.get(8008)?.key, keys.api);
      for (const [port, value] of Object.entries(r.want)) {
        assert.equal(services.get(Number(port))?.value ?? null, value, `port ${port}`);
      }
      if (r.want[8009] !== null) {
        assert.equal(services.get(8009)?.name, METRICS_SERVICE);
        assert.equal(services.get(8009)?.key, `/${METRICS_SERVICE}/${r.options.hostname}:${name}:8009`);
      }
      assert.deepEqual(
        result.skipped.map((s) => `${s.port} ${s.code}`),
        r.skipped ?? [],
      );
    });
  }
});

/** The subset of Prometheus's relabelling that prometheus.yml uses (regexes are anchored). */
interface RelabelConfig {
  source_labels?: string[];
  separator?: string;
  regex?: string;
  target_label?: string;
  replacement?: string;
  action?: string;
}
function relabel(input: Record<string, string>, configs: RelabelConfig[]): Record<string, string> | null {
  let labels = { ...input };
  for (const c of configs) {
    const re = new RegExp(`^(?:${c.regex ?? "(.*)"})$`);
    const value = (c.source_labels ?? []).map((l) => labels[l] ?? "").join(c.separator ?? ";");
    const action = c.action ?? "replace";
    if (action === "keep" && !re.test(value)) return null;
    if (action === "drop" && re.test(value)) return null;
    if (action === "labeldrop") {
      labels = Object.fromEntries(Object.entries(labels).filter(([k]) => !re.test(k)));
    }
    if (action === "replace") {
      const m = re.exec(value);
      if (!m) continue;
      const out = (c.replacement ?? "$1").replace(/\$\{?(\d+)\}?/g, (_, i: string) => m[Number(i)] ?? "");
      if (out === "") delete labels[c.target_label!];
      else labels[c.target_label!] = out;
    }
  }
  return labels;
}

interface ScrapeConfig {
  job_name: string;
  http_sd_configs?: { url: string }[];
  static_configs?: unknown[];
  relabel_configs?: RelabelConfig[];
}
/** prometheus.yml as prometheus/entrypoint.sh renders it for a project. */
function scrapeConfigs(project: string): ScrapeConfig[] {
  const text = readFileSync(join(ROOT, "prometheus", "prometheus.yml"), "utf8");
  return (parse(text.replaceAll("__PGHA_PROJECT__", project)) as { scrape_configs: ScrapeConfig[] })
    .scrape_configs;
}

/** The targets a job keeps from the registrator's /sd: `instance address` plus the host label. */
function targetsOf(job: ScrapeConfig, kvs: Record<string, string>): string[] {
  const out: string[] = [];
  for (const g of targetGroups("", kvs)) {
    for (const t of g.targets) {
      const labels = relabel({ ...g.labels, __address__: t, job: job.job_name }, job.relabel_configs ?? []);
      if (labels === null) continue;
      out.push(`${labels["instance"] ?? t} ${labels["__address__"]} host=${labels["host"]}`);
      assert.deepEqual(
        Object.keys(labels)
          .filter((k) => !k.startsWith("__"))
          .sort(),
        ["container", "host", "instance", "job"],
        "service, id, port and protocol dropped",
      );
    }
  }
  return out.sort();
}

describe("prometheus.yml finds the agents through the registrator's /sd", () => {
  // Three hosts' registrators (the multi-host overlay) wrote into one etcd; another compose
  // project shares host A; a router and etcd are registered too.
  const kvs: Record<string, string> = {};
  const hosts = ["192.168.99.101", "192.168.99.102", "192.168.99.103"];
  for (const [i, host] of hosts.entries()) {
    const n = i + 1;
    const inspect = agentInspect({
      name: `pgha-pg${n}`,
      published: { 5432: 40000 + n * 10, 8008: 40001 + n * 10, 8009: 40002 + n * 10 },
    });
    for (const s of servicesFor(inspect, { ...multiHost, hostname: host, hostIp: host }).services)
      kvs[s.key] = s.value;
  }
  for (const s of servicesFor(agentInspect({ name: "other-pg1", published: { 8009: 41000 } }), multiHost)
    .services)
    kvs[s.key] = s.value;
  kvs[`/router-5432/${HOST_IP}:pgha-router-ports:5432`] = `${HOST_IP}:5432`;
  kvs[`/etcd-2379/${HOST_IP}:pgha-etcd1:2379`] = `${HOST_IP}:2379`;

  const jobs = new Map(scrapeConfigs("pgha").map((j) => [j.job_name, j]));

  it("the agent job: every host's metrics port, this project's only, named pg<n>:8009", () => {
    const job = jobs.get("agent")!;
    assert.equal(job.static_configs, undefined, "no list to edit");
    assert.deepEqual(
      job.http_sd_configs?.map((c) => c.url),
      ["http://registrator:8080/sd"],
    );
    assert.deepEqual(targetsOf(job, kvs), [
      "pg1:8009 192.168.99.101:40012 host=192.168.99.101",
      "pg2:8009 192.168.99.102:40022 host=192.168.99.102",
      "pg3:8009 192.168.99.103:40032 host=192.168.99.103",
    ]);
  });

  it("the patroni job: every host's REST API, named pg<n>:8008", () => {
    assert.deepEqual(targetsOf(jobs.get("patroni")!, kvs), [
      "pg1:8008 192.168.99.101:40011 host=192.168.99.101",
      "pg2:8008 192.168.99.102:40021 host=192.168.99.102",
      "pg3:8008 192.168.99.103:40031 host=192.168.99.103",
    ]);
  });

  it("another project's name keeps its own agents", () => {
    const job = scrapeConfigs("other").find((j) => j.job_name === "agent")!;
    assert.deepEqual(targetsOf(job, kvs), [`pg1:8009 ${HOST_IP}:41000 host=${HOST_IP}`]);
  });

  it("single host (-internal): the containers' addresses on the stack's network", () => {
    const local: Record<string, string> = {};
    for (const n of [1, 2, 3]) {
      const inspect = agentInspect({
        name: `pgha-pg${n}`,
        network: { name: "pgha_pgha", ip: `172.20.0.${n}` },
      });
      for (const s of servicesFor(inspect, singleHost).services) local[s.key] = s.value;
    }
    assert.deepEqual(targetsOf(jobs.get("agent")!, local), [
      "pg1:8009 172.20.0.1:8009 host=local",
      "pg2:8009 172.20.0.2:8009 host=local",
      "pg3:8009 172.20.0.3:8009 host=local",
    ]);
  });
});
