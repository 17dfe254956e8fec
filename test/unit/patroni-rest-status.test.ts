/**
 * Patroni's REST status decoded once for the router and the agent: both spellings of the
 * primary's role (Patroni 3 `master`, Patroni 4 `primary`) read the same, and a body of the
 * wrong shape reads as nothing known, never as an exception.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodePatroniStatus, parsePatroniStatus, runsAsPrimary } from "../../shared/patroni-rest.js";

/** A status with nothing known: every field absent, no failsafe. */
const NOTHING = {
  ...Object.fromEntries(
    ["role", "state", "location", "receivedLocation", "replayedLocation"].map((k) => [k, null]),
  ),
  failsafe: false,
};

describe("Patroni REST status decoder", () => {
  const cases: [string, string, Record<string, unknown>, boolean][] = [
    [
      "Patroni 3.0.2 primary",
      '{"state":"running","role":"master","server_version":150000,"xlog":{"location":67109000},"timeline":1}',
      { role: "primary", state: "running", location: 67109000 },
      true,
    ],
    [
      "Patroni 4 primary in failsafe mode",
      '{"state":"running","role":"primary","xlog":{"location":5},"failsafe_mode_is_active":true}',
      { role: "primary", state: "running", location: 5, failsafe: true },
      true,
    ],
    [
      "a replica",
      '{"state":"running","role":"replica","xlog":{"received_location":10,"replayed_location":9}}',
      { role: "replica", state: "running", receivedLocation: 10, replayedLocation: 9 },
      false,
    ],
    [
      "a leader still in recovery",
      '{"state":"running","role":"replica"}',
      { role: "replica", state: "running" },
      false,
    ],
    [
      "promoting, query failed",
      '{"state":"unknown","role":"promoted"}',
      { role: "promoting", state: "unknown" },
      false,
    ],
    [
      "a stopping primary",
      '{"state":"stopping","role":"master"}',
      { role: "primary", state: "stopping" },
      false,
    ],
    ["an unknown role", '{"state":"running","role":"demoted"}', { role: "unknown", state: "running" }, false],
    [
      "wrong types",
      '{"state":1,"role":["master"],"xlog":{"location":"5"},"failsafe_mode_is_active":"true"}',
      {},
      false,
    ],
    ["not JSON", "<html>", {}, false],
    ["an array", "[1,2]", {}, false],
    ["null", "null", {}, false],
  ];
  for (const [name, body, want, primary] of cases) {
    it(name, () => {
      const s = parsePatroniStatus(body);
      assert.deepEqual({ ...s }, { ...NOTHING, ...want });
      assert.ok(Object.isFrozen(s));
      assert.equal(runsAsPrimary(s), primary);
    });
  }

  it("a decoded body reads as its text does; no answer is no primary", () => {
    assert.deepEqual(
      decodePatroniStatus({ role: "master", state: "running" }),
      parsePatroniStatus('{"role":"master","state":"running"}'),
    );
    assert.deepEqual({ ...decodePatroniStatus(undefined) }, NOTHING);
    assert.equal(runsAsPrimary(null), false);
  });
});
