/** Prometheus's HTTP service discovery from the registry keys: the pure mapping. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { targetGroups } from "../../registrator/http-sd.js";

describe("targetGroups: registry keys → Prometheus target groups", () => {
  it("one group per service key, labelled with service, host, container and exposed port", () => {
    const groups = targetGroups("/", {
      "/postgresql-patroni-api/10.0.0.2:pg2:8008": "10.0.0.2:32769",
      "/postgresql-patroni-api/10.0.0.1:pg1:8008": "10.0.0.1:32768",
      "/dns/host1:resolver:53:udp": "10.0.0.1:53",
    });
    assert.deepEqual(groups, [
      {
        targets: ["10.0.0.1:53"],
        labels: {
          service: "dns",
          id: "host1:resolver:53:udp",
          host: "host1",
          container: "resolver",
          port: "53",
          protocol: "udp",
        },
      },
      {
        targets: ["10.0.0.1:32768"],
        labels: {
          service: "postgresql-patroni-api",
          id: "10.0.0.1:pg1:8008",
          host: "10.0.0.1",
          container: "pg1",
          port: "8008",
        },
      },
      {
        targets: ["10.0.0.2:32769"],
        labels: {
          service: "postgresql-patroni-api",
          id: "10.0.0.2:pg2:8008",
          host: "10.0.0.2",
          container: "pg2",
          port: "8008",
        },
      },
    ]);
  });

  it("a custom SERVICE_ID keeps only service and id; IPv6 targets stay bracketed", () => {
    assert.deepEqual(targetGroups("/svc", { "/svc/web/custom-id": "[fd00::5]:8080" }), [
      { targets: ["[fd00::5]:8080"], labels: { service: "web", id: "custom-id" } },
    ]);
  });

  it("leaves out keys of another shape (Patroni's own), other prefixes and values that are no address", () => {
    assert.deepEqual(
      targetGroups("/svc", {
        "/svc/pg/host1:pg1:5432": "not an address",
        "/svc/pg/host1:pg1:5433": "10.0.0.1:0",
        "/service/demo/members/pg1": '{"role":"primary"}',
        "/svc/pg": "10.0.0.1:5432",
        "/other/pg/host1:pg1:5432": "10.0.0.1:5432",
      }),
      [],
    );
  });
});
