/**
 * Root writes and reads files in directories other accounts may touch: a symlink or hard link
 * planted there must never redirect root's write or read (issue: escalation inside a node).
 * Played here on real files in a temporary directory; test/e2e/node-escalation.test.ts plays
 * the same plants in a real agent container as postgres.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { readPushError } from "../../agent/backup/archive-status.js";
import { writeSecretFile } from "../../agent/files.js";

const root = mkdtempSync(join(tmpdir(), "pgha-file-safety-"));
after(() => rmSync(root, { recursive: true, force: true }));

describe("writeSecretFile: never through a planted link", () => {
  it("writes the file 0600 by default, or with the mode asked for", () => {
    const dir = mkdtempSync(join(root, "w-"));
    writeSecretFile(join(dir, "a.yml"), "secret: 1\n", null);
    assert.equal(statSync(join(dir, "a.yml")).mode & 0o777, 0o600);
    writeSecretFile(join(dir, "b.json"), "{}\n", null, 0o644);
    assert.equal(statSync(join(dir, "b.json")).mode & 0o777, 0o644);
    assert.deepEqual(readdirSync(dir).sort(), ["a.yml", "b.json"], "no temporary file left");
  });

  it("a symlink planted at every name the old scheme used (<file>.tmp-<pid>) is not followed", () => {
    const dir = mkdtempSync(join(root, "plant-"));
    const victim = join(root, `victim-${process.pid}.js`);
    writeFileSync(victim, "original();\n", { mode: 0o755 });
    const before = statSync(victim);
    for (let pid = 1; pid <= 64; pid++) symlinkSync(victim, join(dir, `patroni.yml.tmp-${pid}`));
    symlinkSync(victim, join(dir, `patroni.yml.tmp-${process.pid}`));
    writeSecretFile(join(dir, "patroni.yml"), "password: x\n", null);
    const afterSt = statSync(victim);
    assert.equal(readFileSync(victim, "utf8"), "original();\n");
    assert.equal(afterSt.mode, before.mode);
    assert.equal(afterSt.uid, before.uid);
    assert.equal(readFileSync(join(dir, "patroni.yml"), "utf8"), "password: x\n");
  });

  it("a symlink at the file's own name is replaced, its target untouched", () => {
    const dir = mkdtempSync(join(root, "final-"));
    const victim = join(root, `victim-final-${process.pid}`);
    writeFileSync(victim, "keep\n", { mode: 0o644 });
    symlinkSync(victim, join(dir, "pgbackrest.conf"));
    writeSecretFile(join(dir, "pgbackrest.conf"), "[global]\n", null);
    assert.equal(readFileSync(victim, "utf8"), "keep\n");
    assert.equal(statSync(victim).mode & 0o777, 0o644);
    assert.ok(lstatSync(join(dir, "pgbackrest.conf")).isFile(), "a regular file now");
  });
});

describe("readPushError: only the spool owner's regular files are read", () => {
  const spool = mkdtempSync(join(root, "spool-"));
  const out = join(spool, "archive", "demo", "out");
  mkdirSync(out, { recursive: true });
  const secret = join(root, "shadow");
  writeFileSync(secret, "root:$6$hash:19000:0:99999:7:::\n");

  it("reads pgBackRest's error file", () => {
    writeFileSync(join(out, "000000010000000000000001.error"), "103\nunable to find a valid repository\n");
    assert.match(readPushError(spool, "demo") ?? "", /unable to find a valid repository/);
    rmSync(join(out, "000000010000000000000001.error"));
  });

  it("a symlink planted as the newest error file is not followed", () => {
    symlinkSync(secret, join(out, "000000010000000000000009.error"));
    assert.equal(readPushError(spool, "demo"), undefined);
    rmSync(join(out, "000000010000000000000009.error"));
  });

  it("a hard link planted as the newest error file is not read", () => {
    linkSync(secret, join(out, "00000001000000000000000A.error"));
    assert.equal(readPushError(spool, "demo"), undefined);
    rmSync(join(out, "00000001000000000000000A.error"));
  });

  it("a FIFO planted there does not block the agent", () => {
    // O_NONBLOCK on the open: a FIFO with no writer would otherwise hang the read forever.
    const fifo = join(out, "00000001000000000000000B.error");
    execFileSync("mkfifo", [fifo]);
    assert.equal(readPushError(spool, "demo"), undefined);
    rmSync(fifo);
  });
});
