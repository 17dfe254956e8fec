import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SOCKET_FILE } from "../../agent/parts.js";

describe("agent start: the previous run's PostgreSQL socket files it removes", () => {
  const cases: [string, boolean][] = [
    [".s.PGSQL.5432", true],
    [".s.PGSQL.5432.lock", true],
    [".s.PGSQL.6543.lock", true],
    ["postmaster.pid", false],
    [".s.PGSQL.", false],
    [".s.PGSQL.5432.lock.bak", false],
    ["s.PGSQL.5432", false],
    ["16-main.pid", false],
  ];
  for (const [name, removed] of cases) {
    it(`${name}: ${removed ? "removed" : "kept"}`, () => {
      assert.equal(SOCKET_FILE.test(name), removed);
    });
  }
});
