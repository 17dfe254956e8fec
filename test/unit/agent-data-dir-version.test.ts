/**
 * The data directory's PostgreSQL major against the image's (agent/data-dir.ts): a table of
 * PG_VERSION contents in, start or the one refusal line out.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { dataDirVerdict, readPgVersion } from "../../agent/data-dir.js";

describe("the data directory's PostgreSQL major", () => {
  const table: [string, string | null, number, true | RegExp][] = [
    ["no PG_VERSION: a new cluster or a replica to clone", null, 17, true],
    ["created by the image's major", "17\n", 17, true],
    ["created by the image's major, no newline", "17", 17, true],
    [
      "created by PostgreSQL 15: refused, naming both and the way to move the data",
      "15\n",
      17,
      /^agent: the data directory \/data\/pgdata was created by PostgreSQL 15, this image runs PostgreSQL 17: it is left as it is and not started\. Move the data with pg_dumpall from a PostgreSQL 15 image and restore it into a new PostgreSQL 17 cluster \(agent\/README\.md, "Moving to a new PostgreSQL major"\)$/,
    ],
    [
      "created by a newer major than the image's",
      "18\n",
      17,
      /created by PostgreSQL 18, this image runs PostgreSQL 17: .*pg_dumpall from a PostgreSQL 18 image/,
    ],
    ["an old major on an old image's bin dir", "15\n", 15, true],
    [
      "a PG_VERSION that is no version",
      "garbage",
      17,
      /has a PG_VERSION this agent cannot read \("garbage"\); it is left as it is/,
    ],
    ["an unreadable PG_VERSION", "unreadable (EACCES)", 17, /cannot read \("unreadable \(EACCES\)"\)/],
  ];
  for (const [name, pgVersion, major, want] of table) {
    it(name, () => {
      const v = dataDirVerdict("/data/pgdata", pgVersion, major);
      if (want === true) assert.equal(v.ok, true, JSON.stringify(v));
      else {
        assert.equal(v.ok, false);
        if (!v.ok) {
          assert.match(v.message, want);
          assert.doesNotMatch(v.message, /\n/, "one line");
        }
      }
    });
  }

  it("reads PG_VERSION, and null when there is none", () => {
    const dir = mkdtempSync(join(tmpdir(), "pgversion-"));
    try {
      assert.equal(readPgVersion(dir), null);
      assert.equal(readPgVersion(join(dir, "missing")), null);
      writeFileSync(join(dir, "PG_VERSION"), "15\n");
      assert.equal(readPgVersion(dir), "15\n");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
