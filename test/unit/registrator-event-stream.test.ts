/**
 * Docker's event stream: JSON lines split anywhere across chunks (even inside a
 * multi-byte character) decode to the same events; junk lines are counted, not thrown.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeEvent,
  isTerminatingSignal,
  JsonLineDecoder,
  MAX_LINE_BYTES,
} from "../../registrator/docker-events.js";

const ID = "ba8d4b3cda229a9402188b45c91881274077d4973b6f0ada03bf3ae5fcd8f723";
// Shapes as dockerd 20.10 sends them.
const start = {
  status: "start",
  id: ID,
  from: "debian:bookworm-slim",
  Type: "container",
  Action: "start",
  Actor: { ID, Attributes: { image: "debian:bookworm-slim", name: "pgha-é-name", "pgha.test": "1" } },
  scope: "local",
  time: 1795875233,
  timeNano: 1795875233000000000,
};
const kill = {
  ...start,
  status: "kill",
  Action: "kill",
  Actor: { ID, Attributes: { name: "x", signal: "15" } },
};
const health = { ...start, status: "health_status: healthy", Action: "health_status: healthy" };

function streamText(...events: unknown[]): string {
  return events.map((e) => JSON.stringify(e) + "\n").join("");
}

describe("JsonLineDecoder", () => {
  const whole = Buffer.from(streamText(start, kill, health));

  it("decodes a stream delivered in one chunk", () => {
    const d = new JsonLineDecoder();
    const r = d.push(whole);
    assert.equal(r.values.length, 3);
    assert.equal(r.malformed, 0);
  });

  it("decodes the same events whatever the chunk boundaries (every split point, byte by byte)", () => {
    const expected = new JsonLineDecoder().push(whole).values;
    for (let cut = 1; cut < whole.length; cut += 7) {
      const d = new JsonLineDecoder();
      const values = [...d.push(whole.subarray(0, cut)).values, ...d.push(whole.subarray(cut)).values];
      assert.deepEqual(values, expected, `split at byte ${cut}`);
    }
    const d = new JsonLineDecoder();
    const values: unknown[] = [];
    for (let i = 0; i < whole.length; i++) values.push(...d.push(whole.subarray(i, i + 1)).values);
    assert.deepEqual(values, expected);
  });

  it("keeps a multi-byte character split across chunks intact", () => {
    const at = whole.indexOf(Buffer.from("é"));
    const d = new JsonLineDecoder();
    const values = [...d.push(whole.subarray(0, at + 1)).values, ...d.push(whole.subarray(at + 1)).values];
    assert.equal((values[0] as typeof start).Actor.Attributes.name, "pgha-é-name");
  });

  it("counts junk lines and keeps going", () => {
    const d = new JsonLineDecoder();
    const r = d.push(`{"oops"\n\n${JSON.stringify(start)}\nnot json\n`);
    assert.equal(r.values.length, 1);
    assert.equal(r.malformed, 2);
  });

  it("drops an endless line instead of buffering it forever", () => {
    const d = new JsonLineDecoder();
    const r = d.push("x".repeat(MAX_LINE_BYTES + 1));
    assert.equal(r.malformed, 1);
    assert.equal(d.push(streamText(start)).values.length, 1);
  });
});

describe("decodeEvent", () => {
  const table: [string, unknown, unknown][] = [
    [
      "start, with the daemon's time in ms",
      start,
      { id: ID, action: "start", name: "pgha-é-name", at: 1795875233000 },
    ],
    ["kill carries its signal", kill, { id: ID, action: "kill", name: "x", signal: "15", at: 1795875233000 }],
    [
      "health_status carries the status",
      health,
      { id: ID, action: "health_status", name: "pgha-é-name", health: "healthy", at: 1795875233000 },
    ],
    ["an old-style event without Action", { status: "die", id: ID }, { id: ID, action: "die" }],
    [
      "die carries its exit code",
      {
        Type: "container",
        Action: "die",
        Actor: { ID, Attributes: { exitCode: "137" } },
        timeNano: 1795875234500000000,
      },
      { id: ID, action: "die", exitCode: 137, at: 1795875234500 },
    ],
    [
      "time in seconds when there is no timeNano",
      { status: "die", id: ID, time: 1795875234 },
      { id: ID, action: "die", at: 1795875234000 },
    ],
    [
      "exec events are not ours",
      { ...start, Action: "exec_start: sh -c true", status: "exec_start: sh -c true" },
      null,
    ],
    ["network events are not ours", { ...start, Type: "network", Action: "connect" }, null],
    ["create is not watched", { ...start, Action: "create", status: "create" }, null],
    ["a bad ID", { ...start, Actor: { ID: "../../etc" }, id: "../../etc" }, null],
    ["null", null, null],
    ["an array", [start], null],
    ["a string", "start", null],
  ];
  for (const [title, input, want] of table) {
    it(title, () => assert.deepEqual(decodeEvent(input), want));
  }
});

describe("isTerminatingSignal", () => {
  const table: [string | undefined, boolean][] = [
    [undefined, true],
    ["9", true],
    ["15", true],
    ["SIGTERM", true],
    ["KILL", true],
    ["1", false],
    ["SIGHUP", false],
    ["USR1", false],
  ];
  for (const [sig, want] of table) it(`${sig} → ${want}`, () => assert.equal(isTerminatingSignal(sig), want));
});
