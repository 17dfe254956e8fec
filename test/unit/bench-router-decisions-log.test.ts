import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { routerDecisions } from "../../bench/endpoints.js";

describe("router decisions from its log", () => {
  const log = [
    '{"level":"info","time":"2026-11-28T15:04:59.731Z","msg":"admin listening"}',
    '{"level":"warn","time":"2026-11-28T15:05:00.000Z","route":"b","action":"pause","target":"pg2","reason":"switchover from pg2 to pg1 pending","msg":"primary decision"}',
    "not json",
    '{"level":"warn","time":"2026-11-28T15:05:01.500Z","from":"pg2","to":null,"sessions":3,"msg":"routed primary changed; closing its sessions"}',
    '{"level":"info","time":"2026-11-28T15:05:02.900Z","action":"route","target":"pg1","reason":"pg1 holds the leader key and answers /primary","msg":"primary decision"}',
  ].join("\n");
  const at = (iso: string) => Date.parse(iso);

  it("keeps the decision lines within the window, with their time, action and reason", () => {
    const d = routerDecisions(log, at("2026-11-28T15:05:00.000Z"), at("2026-11-28T15:05:02.000Z"));
    assert.deepEqual(
      d.map((x) => [x.t - at("2026-11-28T15:05:00.000Z"), x.action ?? x.msg, x.target ?? null]),
      [
        [0, "pause", "pg2"],
        [1500, "routed primary changed; closing its sessions", null],
      ],
    );
  });
});
