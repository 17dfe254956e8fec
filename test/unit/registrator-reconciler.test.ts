/** The reconciler's pure plan: desired keys vs what etcd holds → { action, reason } list. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  type ActualKey,
  isKeyOfHost,
  isValidAddress,
  type PlanContext,
  parseServiceKey,
  plan,
} from "../../registrator/reconciler.js";
import { deepFreeze } from "../harness/fixtures.js";

const ctx: PlanContext = {
  prefix: "/svc",
  hostname: "host1",
  leaseId: "42",
  cleanup: false,
  owned: new Set(),
};

const K1 = "/svc/pg/host1:pg1:5432";
const K2 = "/svc/pg/host1:pg2:5432";
const OTHER = "/svc/pg/host2:pg9:5432";
const CUSTOM = "/svc/pg/custom-id";

interface Row {
  title: string;
  desired: Record<string, string>;
  actual: Record<string, ActualKey>;
  ctx?: Partial<PlanContext>;
  want: string[];
}

const rows: Row[] = [
  { title: "nothing wanted, nothing held", desired: {}, actual: {}, want: [] },
  {
    title: "a missing key is put",
    desired: { [K1]: "127.0.0.1:1" },
    actual: {},
    want: [`put ${K1} 127.0.0.1:1 missing from etcd`],
  },
  {
    title: "a key in place on our lease: no action",
    desired: { [K1]: "127.0.0.1:1" },
    actual: { [K1]: { value: "127.0.0.1:1", lease: "42" } },
    want: [],
  },
  {
    title: "a wrong value is rewritten",
    desired: { [K1]: "127.0.0.1:2" },
    actual: { [K1]: { value: "127.0.0.1:1", lease: "42" } },
    want: [`put ${K1} 127.0.0.1:2 value was "127.0.0.1:1"`],
  },
  {
    title: "a key on another lease (an earlier process) is taken over",
    desired: { [K1]: "127.0.0.1:1" },
    actual: { [K1]: { value: "127.0.0.1:1", lease: "7" } },
    want: [`put ${K1} 127.0.0.1:1 not attached to this registrator's lease`],
  },
  {
    title: "-ttl 0: a key on a lease becomes plain",
    desired: { [K1]: "127.0.0.1:1" },
    actual: { [K1]: { value: "127.0.0.1:1", lease: "7" } },
    ctx: { leaseId: "0" },
    want: [`put ${K1} 127.0.0.1:1 attached to a lease; -ttl 0 writes plain keys`],
  },
  {
    title: "an unwanted key on our lease is deleted",
    desired: {},
    actual: { [K1]: { value: "127.0.0.1:1", lease: "42" } },
    want: [`delete ${K1} no running container wants it [lease 42]`],
  },
  {
    title: "an unwanted key this process wrote is deleted (plain keys)",
    desired: {},
    actual: { [K1]: { value: "127.0.0.1:1", lease: "0" } },
    ctx: { leaseId: "0", owned: new Set([K1]) },
    want: [`delete ${K1} no running container wants it`],
  },
  {
    title: "without -cleanup a stale key of this host on another lease stays",
    desired: {},
    actual: { [K1]: { value: "127.0.0.1:1", lease: "7" } },
    want: [],
  },
  {
    title: "with -cleanup a stale plain key of this host is deleted, guarded by the revision read",
    desired: {},
    actual: {
      [K1]: { value: "127.0.0.1:1", lease: "7", modRevision: "10" },
      [K2]: { value: "127.0.0.1:2", lease: "0", modRevision: "11" },
    },
    ctx: { cleanup: true },
    want: [`delete ${K2} stale plain key of this host (-cleanup) [mod 11]`],
  },
  {
    title: "-cleanup leaves a key of this host on another lease: it goes with that lease",
    desired: {},
    actual: { [K1]: { value: "127.0.0.1:1", lease: "7", modRevision: "10" } },
    ctx: { cleanup: true },
    want: [],
  },
  {
    title: "a key on this registrator's lease is deleted only if still on it",
    desired: {},
    actual: { [K1]: { value: "127.0.0.1:1", lease: "42", modRevision: "10" } },
    want: [`delete ${K1} no running container wants it [lease 42]`],
  },
  {
    title: "a key another registrator holds on its lease is never overwritten (an ID not of this host)",
    desired: { [OTHER]: "127.0.0.1:5", [CUSTOM]: "127.0.0.1:6" },
    actual: {
      [OTHER]: { value: "127.0.0.1:1", lease: "7", modRevision: "10" },
      [CUSTOM]: { value: "127.0.0.1:1", lease: "8", modRevision: "12" },
    },
    want: [
      `refuse ${CUSTOM} held by another registrator (lease 8) and its ID does not name this host`,
      `refuse ${OTHER} held by another registrator (lease 7) and its ID does not name this host`,
    ],
  },
  {
    title: "a key of this host on an earlier process's lease is taken over",
    desired: { [K1]: "127.0.0.1:1" },
    actual: { [K1]: { value: "127.0.0.1:1", lease: "7", modRevision: "10" } },
    want: [`put ${K1} 127.0.0.1:1 not attached to this registrator's lease`],
  },
  {
    title: "-cleanup never touches other hosts' keys or keys of another shape",
    desired: {},
    actual: {
      [OTHER]: { value: "127.0.0.1:1", lease: "7" },
      [CUSTOM]: { value: "127.0.0.1:1", lease: "7" },
      "/svc/pg/host1:x/extra": { value: "127.0.0.1:1", lease: "7" },
      "/svcx/pg/host1:pg1:5432": { value: "127.0.0.1:1", lease: "7" },
    },
    ctx: { cleanup: true },
    want: [],
  },
  {
    title: "an invalid value is never written",
    desired: { [K1]: "not-an-address", [K2]: "127.0.0.1:0" },
    actual: {},
    want: [],
  },
  {
    title: "several changes come sorted by key",
    desired: { [K2]: "127.0.0.1:2", [K1]: "127.0.0.1:1" },
    actual: { "/svc/a/host1:z:1": { value: "127.0.0.1:9", lease: "42" } },
    want: [
      "delete /svc/a/host1:z:1 no running container wants it [lease 42]",
      `put ${K1} 127.0.0.1:1 missing from etcd`,
      `put ${K2} 127.0.0.1:2 missing from etcd`,
    ],
  },
];

describe("plan", () => {
  for (const r of rows) {
    it(r.title, () => {
      const desired = deepFreeze(new Map(Object.entries(r.desired)));
      const actual = deepFreeze(new Map(Object.entries(r.actual)));
      const got = plan(desired, actual, { ...ctx, ...r.ctx }).map((a) =>
        a.action === "put"
          ? `put ${a.key} ${a.value} ${a.reason}`
          : a.action === "refuse"
            ? `refuse ${a.key} ${a.reason}`
            : `delete ${a.key} ${a.reason}${a.guard === undefined ? "" : "lease" in a.guard ? ` [lease ${a.guard.lease}]` : ` [mod ${a.guard.modRevision}]`}`,
      );
      assert.deepEqual(got, r.want);
      assert.equal(desired.size, Object.keys(r.desired).length, "inputs untouched");
    });
  }
});

describe("key helpers", () => {
  it("parseServiceKey splits /prefix/name/id and rejects other shapes", () => {
    assert.deepEqual(parseServiceKey("/svc", K1), { name: "pg", id: "host1:pg1:5432" });
    assert.deepEqual(parseServiceKey("", "/pg/host1:pg1:5432"), { name: "pg", id: "host1:pg1:5432" });
    assert.equal(parseServiceKey("/svc", "/svc/pg"), null);
    assert.equal(parseServiceKey("/svc", "/svc//x"), null);
    assert.equal(parseServiceKey("/svc", "/service/demo/members/pg1"), null);
    assert.equal(parseServiceKey("", "/service/demo/members/pg1"), null);
  });

  it("isKeyOfHost needs the hostname followed by a colon", () => {
    assert.equal(isKeyOfHost("/svc", "host1", K1), true);
    assert.equal(isKeyOfHost("/svc", "host", K1), false);
    assert.equal(isKeyOfHost("/svc", "host1", OTHER), false);
  });

  const addresses: [string, boolean][] = [
    ["127.0.0.1:5432", true],
    ["[::1]:5432", true],
    ["[2001:db8::1]:65535", true],
    ["::1:5432", false],
    ["127.0.0.1:0", false],
    ["127.0.0.1:65536", false],
    ["host:5432", false],
    ["127.0.0.1", false],
    ["[127.0.0.1]:5432", false],
    ["", false],
  ];
  for (const [v, want] of addresses) {
    it(`isValidAddress(${JSON.stringify(v)}) = ${want}`, () => assert.equal(isValidAddress(v), want));
  }
});
