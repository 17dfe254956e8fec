/**
 * `-ip swarm`: the registrator advertises published ports on the address its node gives
 * its swarm. The flag and its env form parse to the marker main.ts resolves, anything
 * else that is no address is refused naming what is accepted, and the node's address is
 * read from Docker's /info only when the engine is an active swarm node.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { IP_FROM_SWARM, parseOptions, swarmNodeAddr } from "../../registrator/options.js";
import { ConfigError } from "../../shared/errors.js";

function ipOf(argv: string[], env: Record<string, string> = {}): string | undefined {
  const r = parseOptions(argv, env, "os-host");
  if (r.kind !== "options") throw new Error("expected options");
  return r.options.ip;
}

describe("registrator -ip swarm", () => {
  it("parses from the flag and from REGISTRATOR_IP; an address stays an address", () => {
    assert.equal(ipOf(["-ip", "swarm", "etcd://h"]), IP_FROM_SWARM);
    assert.equal(ipOf(["etcd://h"], { REGISTRATOR_IP: "swarm" }), IP_FROM_SWARM);
    assert.equal(ipOf(["-ip", "192.0.2.7", "etcd://h"]), "192.0.2.7");
    assert.equal(ipOf(["etcd://h"]), undefined);
  });

  for (const bad of ["Swarm", "swarm:", "node", "auto"]) {
    it(`refuses -ip ${bad}, naming what is accepted`, () => {
      assert.throws(
        () => parseOptions(["-ip", bad, "etcd://h"], {}, "os-host"),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.message.includes(`invalid value ${JSON.stringify(bad)} for -ip`) &&
          err.message.includes("expected an IPv4 or IPv6 address, or swarm"),
      );
    });
  }

  const table: [string, Parameters<typeof swarmNodeAddr>[0], { ip: string } | RegExp][] = [
    ["an active node", { Swarm: { LocalNodeState: "active", NodeAddr: "10.0.0.5" } }, { ip: "10.0.0.5" }],
    ["an IPv6 node", { Swarm: { LocalNodeState: "active", NodeAddr: "fd00::5" } }, { ip: "fd00::5" }],
    [
      "no swarm",
      { Swarm: { LocalNodeState: "inactive", NodeAddr: "" } },
      /not an active swarm node \(its swarm state is inactive\): join it to a swarm, or give -ip an address/,
    ],
    ["a node joining", { Swarm: { LocalNodeState: "pending", NodeAddr: "" } }, /swarm state is pending/],
    ["a locked node", { Swarm: { LocalNodeState: "locked" } }, /swarm state is locked/],
    ["an engine without a Swarm section", {}, /swarm state is unknown/],
    ["a null Swarm section", { Swarm: null }, /swarm state is unknown/],
    [
      "an active node without an address",
      { Swarm: { LocalNodeState: "active", NodeAddr: "" } },
      /address "" is not an IP address/,
    ],
    [
      "a name for an address",
      { Swarm: { LocalNodeState: "active", NodeAddr: "node-a" } },
      /address "node-a" is not an IP address/,
    ],
  ];
  for (const [what, info, expected] of table) {
    it(`the node's address from /info: ${what}`, () => {
      const got = swarmNodeAddr(info);
      if (expected instanceof RegExp) {
        assert.ok("error" in got, JSON.stringify(got));
        assert.match(got.error, expected);
      } else {
        assert.deepEqual(got, expected);
      }
    });
  }
});
