/**
 * The stop fence as tables: what a fence key decodes to, and whether a node may
 * promote given the fence, `/status` and its own WAL position.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeFence,
  encodeFence,
  type Fence,
  type FenceRead,
  formatLsn,
  parseControlData,
  parseLsn,
  promotionVerdict,
} from "../../agent/fence.js";

const since = "2026-12-03T05:00:00.000Z";
const fence = (f: Fence): FenceRead => ({ kind: "fence", fence: f });
const LSN = 0x3000060;

describe("the stop fence's key decodes leniently", () => {
  const table: [string, string | null, FenceRead["kind"], Partial<Fence>?][] = [
    ["no key", null, "none"],
    ["an empty value", "  ", "none"],
    [
      "stopping",
      JSON.stringify({ state: "stopping", member: "john", since }),
      "fence",
      { state: "stopping", member: "john" },
    ],
    [
      "handover",
      JSON.stringify({ state: "handover", member: "john", candidate: "paul", since }),
      "fence",
      { state: "handover", candidate: "paul" },
    ],
    ["stopped", JSON.stringify({ state: "stopped", member: "john", lsn: LSN, since }), "fence", { lsn: LSN }],
    ["not JSON", "john", "invalid"],
    ["an array", "[]", "invalid"],
    ["an unknown state", JSON.stringify({ state: "frozen", member: "john" }), "invalid"],
    ["no member", JSON.stringify({ state: "stopping" }), "invalid"],
    ["a member name with a slash", JSON.stringify({ state: "stopping", member: "a/b" }), "invalid"],
    ["handover without a candidate", JSON.stringify({ state: "handover", member: "john" }), "invalid"],
    ["stopped without an LSN", JSON.stringify({ state: "stopped", member: "john" }), "invalid"],
    ["stopped with a negative LSN", JSON.stringify({ state: "stopped", member: "john", lsn: -1 }), "invalid"],
    [
      "stopped with a text LSN",
      JSON.stringify({ state: "stopped", member: "john", lsn: "0/3000060" }),
      "invalid",
    ],
  ];
  for (const [name, raw, kind, fields] of table) {
    it(name, () => {
      const r = decodeFence(raw);
      assert.equal(r.kind, kind);
      if (r.kind === "fence" && fields) {
        for (const [k, v] of Object.entries(fields)) assert.equal((r.fence as Record<string, unknown>)[k], v);
      }
    });
  }

  it("round-trips what the agent writes", () => {
    const f: Fence = { state: "stopped", member: "pg1", lsn: 2 ** 40 + 5, since };
    assert.deepEqual(decodeFence(encodeFence(f)), { kind: "fence", fence: f });
  });
});

describe("who may promote", () => {
  const stopping = fence({ state: "stopping", member: "john", since });
  const handover = fence({ state: "handover", member: "john", candidate: "paul", since });
  const stopped = fence({ state: "stopped", member: "john", lsn: LSN, since });
  const table: [string, string, FenceRead, number | null, number | null, boolean, RegExp][] = [
    // name, self, fence, /status optime, own LSN, allowed, reason
    ["no fence: Patroni's rules alone", "paul", { kind: "none" }, null, null, true, /no stop fence/],
    [
      "stopping: a replica waits",
      "paul",
      stopping,
      LSN,
      LSN + 100,
      false,
      /john is stopping without a handover/,
    ],
    ["stopping: the old leader itself may", "john", stopping, null, null, true, /leader that stopped/],
    ["handover: the candidate with the checkpoint", "paul", handover, LSN, LSN + 0x68, true, /at or past/],
    ["handover: the candidate exactly at it", "paul", handover, LSN, LSN, true, /at or past/],
    [
      "handover: the candidate short of it",
      "paul",
      handover,
      LSN,
      LSN - 1,
      false,
      /has 0\/300005F, the leader wrote up to 0\/3000060/,
    ],
    [
      "handover: another replica",
      "ringo",
      handover,
      LSN,
      LSN + 100,
      false,
      /handing over to paul, not to ringo/,
    ],
    ["handover: /status unknown", "paul", handover, null, LSN, false, /leader's last position.*unknown/],
    ["handover: own position unknown", "paul", handover, LSN, null, false, /WAL position.*unknown/],
    ["stopped: a replica with every write", "paul", stopped, null, LSN + 1, true, /every write/],
    [
      "stopped: a replica short of the checkpoint",
      "paul",
      stopped,
      LSN + 10,
      LSN - 0x100,
      false,
      /waits for john/,
    ],
    ["stopped: own position unknown", "paul", stopped, null, null, false, /unknown/],
    ["stopped: the old leader itself", "john", stopped, null, 0, true, /leader that stopped/],
    [
      "an unreadable fence refuses",
      "paul",
      { kind: "invalid", raw: "garbage" },
      LSN,
      LSN,
      false,
      /unreadable/,
    ],
  ];
  for (const [name, self, f, statusOptime, ownLsn, allow, reason] of table) {
    it(name, () => {
      const input = { self, fence: f, statusOptime, ownLsn };
      const frozen = structuredClone(input);
      const v = promotionVerdict(input);
      assert.equal(v.allow, allow, v.reason);
      assert.match(v.reason, reason);
      assert.deepEqual(input, frozen, "the input is not mutated");
    });
  }
});

describe("LSNs and pg_controldata", () => {
  it("parses and prints LSNs as PostgreSQL does", () => {
    assert.equal(parseLsn("0/3000060"), LSN);
    assert.equal(parseLsn("1/0"), 2 ** 32);
    assert.equal(parseLsn("FFFFFFFF/FFFFFFFF"), 2 ** 64 - 1);
    assert.equal(parseLsn("3000060"), null);
    assert.equal(parseLsn("0/xyz"), null);
    assert.equal(formatLsn(LSN), "0/3000060");
    assert.equal(formatLsn(2 ** 32 + 0xab), "1/AB");
  });

  it("reads the cluster state and the latest checkpoint", () => {
    const text = [
      "pg_control version number:            1300",
      "Database cluster state:               shut down",
      "pg_control last modified:             Thu Dec  3 05:00:00 2026",
      "Latest checkpoint location:           0/3000060",
      "Latest checkpoint's REDO location:    0/3000028",
      "Latest checkpoint's TimeLineID:       1",
    ].join("\n");
    assert.deepEqual(parseControlData(text), { state: "shut down", checkpointLsn: LSN });
    assert.deepEqual(parseControlData("Database cluster state: in production\n"), {
      state: "in production",
      checkpointLsn: null,
    });
    assert.deepEqual(parseControlData(""), { state: null, checkpointLsn: null });
  });
});
