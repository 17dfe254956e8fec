/**
 * The gliderlabs-compatible service model, table-driven on `docker inspect` JSON
 * captured from this machine's engine (test/fixtures/registrator/capture.sh),
 * plus malformed inputs. Every input is deep-frozen: the model must not mutate it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  imageBaseName,
  type ModelOptions,
  type Related,
  servicesFor,
} from "../../registrator/service-model.js";
import { deepFreeze, mutableFixture, readJsonFixture } from "../harness/fixtures.js";

const C = "pgha-fixture-18927-"; // the container-name prefix the capture used
const base: ModelOptions = Object.freeze({
  hostname: "host1",
  prefix: "/svc",
  internal: false,
  explicit: false,
  tags: Object.freeze([]),
});

interface Expected {
  readonly key: string;
  readonly value: string;
  readonly tags?: readonly string[];
  readonly attrs?: Record<string, string>;
}

interface Row {
  readonly title: string;
  readonly fixture: string;
  readonly options?: Partial<ModelOptions>;
  readonly services: readonly Expected[];
  /** `port code` of each skip, in order. */
  readonly skipped?: readonly string[];
}

const rows: Row[] = [
  {
    title: "one published port: image base name, hostname:container:port, published ip:port",
    fixture: "single",
    services: [{ key: `/svc/debian/host1:${C}single:5432`, value: "127.0.0.1:32769", tags: [], attrs: {} }],
  },
  {
    title: "several ports: -<port> suffix, except for a name from SERVICE_<port>_NAME",
    fixture: "several",
    services: [
      { key: `/svc/debian-5432/host1:${C}several:5432`, value: "127.0.0.1:32771" },
      { key: `/svc/patroni-api/host1:${C}several:8008`, value: "127.0.0.1:32770" },
    ],
  },
  {
    title: "udp: :udp ID suffix and a udp tag; tcp on the same port is a separate service",
    fixture: "udp",
    services: [
      { key: `/svc/dns-5353/host1:${C}udp:5353`, value: "127.0.0.1:32772", tags: [] },
      { key: `/svc/dns-5353/host1:${C}udp:5353:udp`, value: "127.0.0.1:32768", tags: ["udp"] },
    ],
  },
  {
    title: "user-defined network: the published port; the unpublished one is skipped",
    fixture: "usernet",
    services: [{ key: `/svc/debian/host1:${C}usernet:5432`, value: "127.0.0.1:32773" }],
    skipped: ["8008/tcp not-published"],
  },
  {
    title: "-internal on a user-defined network: the IP on the network NetworkMode names, exposed ports",
    fixture: "usernet",
    options: { internal: true },
    services: [
      { key: `/svc/debian-5432/host1:${C}usernet:5432`, value: "172.18.0.2:5432" },
      { key: `/svc/debian-8008/host1:${C}usernet:8008`, value: "172.18.0.2:8008" },
    ],
  },
  {
    title: "env vs labels: labels win, per-port wins, SERVICE_ID, escaped tags, attributes",
    fixture: "envlabels",
    services: [
      {
        key: "/svc/pg-label/custom-pg-id",
        value: "127.0.0.1:32775",
        tags: ["primary", "a,b"],
        attrs: { region: "eu-west" },
      },
      {
        key: `/svc/from-label-8008/host1:${C}envlabels:8008`,
        value: "127.0.0.1:32774",
        tags: ["api"],
        attrs: { region: "eu-west" },
      },
    ],
  },
  {
    title: "-tags are appended to the service's own tags",
    fixture: "envlabels",
    options: { tags: ["dc1", "x,y"] },
    services: [
      { key: "/svc/pg-label/custom-pg-id", value: "127.0.0.1:32775", tags: ["primary", "a,b", "dc1", "x,y"] },
      {
        key: `/svc/from-label-8008/host1:${C}envlabels:8008`,
        value: "127.0.0.1:32774",
        tags: ["api", "dc1", "x,y"],
      },
    ],
  },
  {
    title: "-useIpFromLabel: the label's address without its /CIDR",
    fixture: "envlabels",
    options: { useIpFromLabel: "com.example.ip" },
    services: [
      { key: "/svc/pg-label/custom-pg-id", value: "10.9.8.7:32775" },
      { key: `/svc/from-label-8008/host1:${C}envlabels:8008`, value: "10.9.8.7:32774" },
    ],
  },
  {
    title: "-useIpFromLabel with a label the container lacks keeps the published address",
    fixture: "single",
    options: { useIpFromLabel: "com.example.ip" },
    services: [{ key: `/svc/debian/host1:${C}single:5432`, value: "127.0.0.1:32769" }],
  },
  {
    title: "SERVICE_IGNORE skips the container",
    fixture: "ignore",
    services: [],
    skipped: ["5432/tcp ignored"],
  },
  {
    title: "SERVICE_<port>_IGNORE skips one port; the other keeps its group suffix",
    fixture: "portignore",
    services: [{ key: `/svc/db-5432/host1:${C}portignore:5432`, value: "127.0.0.1:32778" }],
    skipped: ["8008/tcp ignored"],
  },
  {
    title: "-explicit registers a container with SERVICE_NAME",
    fixture: "explicit",
    options: { explicit: true },
    services: [{ key: `/svc/postgresql/host1:${C}explicit:5432`, value: "127.0.0.1:32779" }],
  },
  {
    title: "-explicit skips a container without SERVICE_NAME",
    fixture: "single",
    options: { explicit: true },
    services: [],
    skipped: ["5432/tcp not-explicit"],
  },
  {
    title: "published on all interfaces: the address the hostname resolves to",
    fixture: "allifaces",
    options: { defaultHostIp: "192.0.2.10" },
    services: [{ key: `/svc/debian/host1:${C}allifaces:5432`, value: "192.0.2.10:32768" }],
  },
  {
    title: "published on all interfaces with no known host address: skipped, never an invalid value",
    fixture: "allifaces",
    services: [],
    skipped: ["5432/tcp no-address"],
  },
  {
    title: "-ip forces the address of published ports",
    fixture: "single",
    options: { hostIp: "198.51.100.7", defaultHostIp: "192.0.2.10" },
    services: [{ key: `/svc/debian/host1:${C}single:5432`, value: "198.51.100.7:32769" }],
  },
  {
    title: "-ip forces an IPv6 address, bracketed",
    fixture: "single",
    options: { hostIp: "2001:db8::7" },
    services: [{ key: `/svc/debian/host1:${C}single:5432`, value: "[2001:db8::7]:32769" }],
  },
  {
    title: "published on IPv6 loopback: bracketed",
    fixture: "ipv6",
    services: [{ key: `/svc/debian/host1:${C}ipv6:5432`, value: "[::1]:32769" }],
  },
  {
    title: "host network: exposed ports on the host's address",
    fixture: "hostnet",
    options: { defaultHostIp: "192.0.2.10" },
    services: [{ key: `/svc/debian/host1:${C}hostnet:5432`, value: "192.0.2.10:5432" }],
  },
  {
    title: "host network with -internal: still the host's address",
    fixture: "hostnet",
    options: { internal: true, hostIp: "192.0.2.11" },
    services: [{ key: `/svc/debian/host1:${C}hostnet:5432`, value: "192.0.2.11:5432" }],
  },
  {
    title: "exposed but not published: skipped without -internal",
    fixture: "exposed",
    services: [],
    skipped: ["5432/tcp not-published"],
  },
  {
    title: "exposed but not published with -internal: the default bridge address",
    fixture: "exposed",
    options: { internal: true },
    services: [{ key: `/svc/debian/host1:${C}exposed:5432`, value: "172.17.0.11:5432" }],
  },
  {
    title: "names that would break a key are skipped with a reason",
    fixture: "badname",
    services: [],
    skipped: ["5432/tcp invalid-name", "8008/tcp invalid-name"],
  },
  {
    title: "a prefix-less registry: keys start at the root",
    fixture: "single",
    options: { prefix: "" },
    services: [{ key: `/debian/host1:${C}single:5432`, value: "127.0.0.1:32769" }],
  },
];

function check(r: Row, inspect: unknown, related?: Related) {
  const out = servicesFor(inspect, { ...base, ...r.options }, related);
  assert.deepEqual(
    out.services.map((s) => ({ key: s.key, value: s.value })),
    r.services.map((s) => ({ key: s.key, value: s.value })),
  );
  r.services.forEach((want, i) => {
    const got = out.services[i]!;
    if (want.tags) assert.deepEqual(got.tags, want.tags, `tags of ${want.key}`);
    if (want.attrs) assert.deepEqual(got.attrs, want.attrs, `attrs of ${want.key}`);
    assert.equal(got.key, `${r.options?.prefix ?? "/svc"}/${got.name}/${got.id}`);
  });
  assert.deepEqual(
    out.skipped.map((s) => `${s.port} ${s.code}`),
    r.skipped ?? [],
  );
  for (const s of out.skipped) assert.ok(s.reason.length > 0, "every skip says why");
}

describe("servicesFor on real docker inspect JSON", () => {
  for (const r of rows) {
    it(r.title, () => {
      const inspect = deepFreeze(readJsonFixture(`registrator/${r.fixture}.json`));
      check(r, inspect);
    });
  }

  it("the badname skips name the offending value", () => {
    const out = servicesFor(readJsonFixture("registrator/badname.json"), base);
    assert.match(out.skipped[0]!.reason, /service name "bad\/name" would break the key/);
    assert.match(out.skipped[1]!.reason, /service ID " " would break the key/);
  });

  it("NetworkMode container:<id> with -internal takes the address of the network container", () => {
    const app = mutableFixture("registrator/exposed.json");
    app["HostConfig"]["NetworkMode"] = "container:0123456789ab";
    app["NetworkSettings"] = { Ports: {}, Networks: {}, IPAddress: "" };
    const related = deepFreeze({ networkContainer: readJsonFixture("registrator/usernet.json") });
    const out = servicesFor(deepFreeze(app), { ...base, internal: true }, related);
    assert.deepEqual(
      out.services.map((s) => s.value),
      ["172.18.0.2:5432"],
    );
    const alone = servicesFor(app, { ...base, internal: true });
    assert.deepEqual(
      alone.skipped.map((s) => s.code),
      ["no-address"],
    );
  });

  it("-internal on an IPv6-only network brackets the global IPv6 address", () => {
    const c = mutableFixture("registrator/exposed.json");
    c["NetworkSettings"]["IPAddress"] = "";
    c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] = "";
    c["NetworkSettings"]["Networks"]["bridge"]["GlobalIPv6Address"] = "fd00:dead::5";
    const out = servicesFor(deepFreeze(c), { ...base, internal: true });
    assert.deepEqual(
      out.services.map((s) => s.value),
      ["[fd00:dead::5]:5432"],
    );
  });
});

describe("servicesFor on malformed input", () => {
  const single = () => mutableFixture("registrator/single.json");
  const cases: { title: string; input: () => unknown; codes: string[]; services?: number }[] = [
    { title: "null", input: () => null, codes: ["malformed"] },
    { title: "a number", input: () => 42, codes: ["malformed"] },
    { title: "a string", input: () => "container", codes: ["malformed"] },
    { title: "an array", input: () => [single()], codes: ["malformed"] },
    { title: "an empty object", input: () => ({}), codes: ["malformed"] },
    {
      title: "no Config",
      input: () => {
        const c = single();
        delete c["Config"];
        return c;
      },
      codes: ["malformed"],
    },
    {
      title: "an empty container name",
      input: () => ({ ...single(), Name: "/" }),
      codes: ["invalid-name"],
    },
    {
      title: "a container name with a slash",
      input: () => ({ ...single(), Name: "/a/b" }),
      codes: ["invalid-name"],
    },
    {
      title: "a port key that is not a number",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"] = { "http/tcp": [{ HostIp: "127.0.0.1", HostPort: "8080" }] };
        c["Config"]["ExposedPorts"] = { "http/tcp": {} };
        return c;
      },
      codes: ["invalid-port"],
    },
    {
      title: "an unknown protocol",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"] = { "5432/quic": [{ HostIp: "127.0.0.1", HostPort: "8080" }] };
        c["Config"]["ExposedPorts"] = {};
        return c;
      },
      codes: ["invalid-port"],
    },
    {
      title: "port 0 and port 70000",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"] = { "0/tcp": [], "70000/tcp": [] };
        c["Config"]["ExposedPorts"] = {};
        return c;
      },
      codes: ["invalid-port", "invalid-port"],
    },
    {
      title: "a host port that is not a number",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"]["5432/tcp"] = [{ HostIp: "127.0.0.1", HostPort: "abc" }];
        return c;
      },
      codes: ["invalid-port"],
    },
    {
      title: "a host port out of range",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"]["5432/tcp"] = [{ HostIp: "127.0.0.1", HostPort: "99999" }];
        return c;
      },
      codes: ["invalid-port"],
    },
    {
      title: "a host IP that is not an address",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"]["5432/tcp"] = [{ HostIp: "localhost", HostPort: "5432" }];
        return c;
      },
      codes: ["no-address"],
    },
    {
      title: "a useIpFromLabel label that is not an address",
      input: () => {
        const c = single();
        c["Config"]["Labels"] = { "com.example.ip": "not-an-ip/24" };
        return c;
      },
      codes: ["no-address"],
    },
    {
      title: "Env that is not a list and labels that are not strings",
      input: () => {
        const c = single();
        c["Config"]["Env"] = "SERVICE_NAME=x";
        c["Config"]["Labels"] = { SERVICE_NAME: 5, SERVICE_TAGS: null };
        return c;
      },
      codes: [],
      services: 1,
    },
    {
      title: "Env entries that are not strings or lack '='",
      input: () => {
        const c = single();
        c["Config"]["Env"] = [1, null, "SERVICE_NAME", "=x", "SERVICE_NAME=ok"];
        return c;
      },
      codes: [],
      services: 1,
    },
    {
      title: "NetworkSettings missing",
      input: () => {
        const c = single();
        delete c["NetworkSettings"];
        return c;
      },
      codes: ["not-published"],
    },
    {
      title: "Ports bindings of the wrong shape",
      input: () => {
        const c = single();
        c["NetworkSettings"]["Ports"]["5432/tcp"] = "127.0.0.1:5432";
        return c;
      },
      codes: ["not-published"],
    },
    {
      title: "one SERVICE_ID for two ports",
      input: () => {
        const c = mutableFixture("registrator/several.json");
        c["Config"]["Labels"] = { SERVICE_ID: "same", SERVICE_5432_NAME: "same", SERVICE_8008_NAME: "same" };
        return c;
      },
      codes: ["duplicate-key"],
      services: 1,
    },
    {
      title: "a SERVICE_ID that names another host (<hostname>:<container>:<port>)",
      input: () => {
        const c = single();
        c["Config"]["Labels"] = { SERVICE_ID: "host2:pg1:5432" };
        return c;
      },
      codes: ["foreign-id"],
    },
    {
      title: "a SERVICE_ID of that shape with :udp, naming another host",
      input: () => {
        const c = single();
        c["Config"]["Labels"] = { SERVICE_ID: "host2:dns:53:udp" };
        return c;
      },
      codes: ["foreign-id"],
    },
    {
      title: "a SERVICE_ID that names this host is its own",
      input: () => {
        const c = single();
        c["Config"]["Labels"] = { SERVICE_ID: "host1:renamed:5432" };
        return c;
      },
      codes: [],
      services: 1,
    },
    {
      title: "a SERVICE_ID of another shape (web:1) claims no host",
      input: () => {
        const c = single();
        c["Config"]["Labels"] = { SERVICE_ID: "web:1" };
        return c;
      },
      codes: [],
      services: 1,
    },
  ];
  for (const c of cases) {
    it(`${c.title}: skipped with a reason, never thrown`, () => {
      const input = deepFreeze(c.input());
      const out = servicesFor(input, { ...base, useIpFromLabel: "com.example.ip" });
      assert.deepEqual(
        out.skipped.map((s) => s.code),
        c.codes,
      );
      assert.equal(out.services.length, c.services ?? 0);
      for (const s of out.services) assert.match(s.value, /^(\d+\.){3}\d+:\d+$/);
    });
  }
});

describe("imageBaseName", () => {
  const table: [string, string][] = [
    ["debian:bookworm-slim", "debian"],
    ["postgres", "postgres"],
    ["registry.example:5000/team/pg:15", "pg"],
    ["ghcr.io/team/pg@sha256:0123abcd", "pg"],
    ["team/pg:15@sha256:0123abcd", "pg"],
    ["", ""],
  ];
  for (const [image, want] of table) {
    it(`${JSON.stringify(image)} → ${JSON.stringify(want)}`, () => assert.equal(imageBaseName(image), want));
  }
});
