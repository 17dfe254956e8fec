/**
 * The command-line contract of every service entry point that package.json declares
 * (`bin`), run as a user runs it: `node dist/<service>/main.js`. `--help` lists every
 * option with its environment variable and default; a bad option or value exits 2 with
 * one line that names it. A service is covered as soon as its entry point is built.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import {
  cleanEnv,
  type Exit,
  type HelpOption,
  INVALID_BY_METAVAR,
  mapLimit,
  parseHelp,
  runToExit,
  serviceBins,
} from "../harness/bins.js";

const bins = serviceBins();
// An entry point left in dist/ by an earlier build whose source is gone is not a service.
const built = bins.filter((b) => b.built && b.sourceExists);

const runBin = (path: string, args: readonly string[]) =>
  runToExit(process.execPath, [path, ...args], { env: cleanEnv() });

function assertOneLineExit2(r: Exit, what: string, mustName: readonly string[]): void {
  assert.equal(r.code, 2, `${what}: exit code 2, got ${r.code}; stderr: ${r.stderr}`);
  assert.equal(r.stdout, "", `${what}: nothing on stdout`);
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `${what}: one line on stderr, got:\n${r.stderr}`);
  for (const word of mustName) assert.ok(lines[0]!.includes(word), `${what}: "${lines[0]}" names ${word}`);
}

describe("service entry points declared in package.json", () => {
  it("at least one is built, so this contract is checked at all", () => {
    const declared = bins.map((b) => `${b.name} -> ${b.path}`).join(", ");
    assert.ok(built.length > 0, `no entry point exists after the build (declared: ${declared || "none"})`);
  });

  it("every service whose main.ts exists is built to its bin path", () => {
    for (const b of bins) {
      if (b.sourceExists) assert.ok(b.built, `${b.source} exists but ${b.path} was not built`);
    }
  });
});

for (const bin of built) {
  describe(`${bin.name} (node ${bin.path})`, () => {
    let help: Exit;
    let options: HelpOption[];
    before(async () => {
      help = await runBin(bin.path, ["--help"]);
      options = parseHelp(help.stdout);
    });

    it("--help exits 0 with the usage on stdout and nothing on stderr", () => {
      assert.equal(help.code, 0, `exit code; stderr: ${help.stderr}`);
      assert.match(help.stdout, /^Usage: /);
      assert.equal(help.stderr, "");
    });

    it("--help lists every option with its environment variable and default", () => {
      assert.ok(options.length > 0, `no option found in:\n${help.stdout}`);
      const envs = new Set<string>();
      for (const o of options) {
        assert.match(o.env ?? "", /^[A-Z][A-Z0-9_]*$/, `${o.spelled} names its environment variable`);
        assert.ok(!envs.has(o.env!), `${o.env} belongs to one option only`);
        envs.add(o.env!);
        assert.ok(
          o.facts.some((f) => /^(default .+|required|repeatable)$/.test(f)),
          `${o.spelled} says its default (or that it is required or repeatable): [${o.facts.join("; ")}]`,
        );
      }
    });

    it("an unknown option exits 2 with one line naming it", async () => {
      const r = await runBin(bin.path, ["--no-such-option-xyz"]);
      assertOneLineExit2(r, "--no-such-option-xyz", ["--no-such-option-xyz"]);
    });

    // The parser is shared and table-tested in config.test.ts; here, that each service wires it:
    // one option without its value, and one option of each typed kind given a bad value.
    it("an option given no value or a bad one exits 2 with one line naming it", async () => {
      const valued = options.filter((o) => o.metavar !== "");
      assert.ok(valued.length > 0, "the service has options that take a value");
      const first = valued[0]!;
      const cases = [
        { args: [first.spelled], what: `${first.spelled} without a value`, mustName: [first.spelled] },
      ];
      const seen = new Set<string>();
      for (const o of valued) {
        const bad = INVALID_BY_METAVAR[o.metavar];
        if (bad === undefined || seen.has(o.metavar)) continue;
        seen.add(o.metavar);
        cases.push({
          args: [o.spelled, bad],
          what: `${o.spelled} ${bad}`,
          mustName: [o.spelled, JSON.stringify(bad), "expected"],
        });
      }
      const results = await mapLimit(cases, 2, (c) => runBin(bin.path, c.args));
      cases.forEach((c, i) => {
        assertOneLineExit2(results[i]!, c.what, c.mustName);
      });
    });
  });
}
