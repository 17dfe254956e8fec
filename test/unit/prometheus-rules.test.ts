/**
 * The monitoring profile's alert rules: promtool accepts the configuration and the
 * rules and passes their unit tests (prometheus/alerts.test.yml); every rule carries a
 * severity, a summary and a description naming what to run, and is shown both firing
 * and not firing; the metrics the rules read are ones our services export, from jobs
 * prometheus.yml scrapes; and the image puts the rules where prometheus.yml looks.
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";

const ROOT = new URL("../../../", import.meta.url).pathname;
const DIR = join(ROOT, "prometheus");
const PROMTOOL = process.env["PROMTOOL"] ?? "promtool";
const SEVERITIES = ["critical", "warning", "info"];

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface AlertTest {
  alertname: string;
  eval_time: string;
  exp_alerts?: unknown[] | null;
}
interface TestGroup {
  name?: string;
  alert_rule_test?: AlertTest[];
}

const rules: Rule[] = (
  parse(readFileSync(join(DIR, "alerts.yml"), "utf8")) as { groups: { rules: Rule[] }[] }
).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r): r is Rule & { alert: string } => typeof r.alert === "string");
const config = parse(readFileSync(join(DIR, "prometheus.yml"), "utf8")) as {
  rule_files?: string[];
  scrape_configs: { job_name: string }[];
};

/** Runs promtool in prometheus/; a missing promtool fails with what to install. */
function promtool(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    execFile(PROMTOOL, args, { cwd: DIR, timeout: 120_000 }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      if ((err as NodeJS.ErrnoException | null)?.code === "ENOENT") {
        reject(
          new Error(
            `promtool not found (${PROMTOOL}): install Debian's prometheus package ` +
              "(apt-get install prometheus), which carries /usr/bin/promtool, or set PROMTOOL",
          ),
        );
        return;
      }
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, output });
    });
  });
}

describe("promtool", () => {
  it("accepts prometheus.yml, and the rule files it names resolve beside it", async () => {
    const r = await promtool(["check", "config", "prometheus.yml"]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /SUCCESS: 1 rule files found/, r.output);
  });

  it("accepts alerts.yml", async () => {
    const r = await promtool(["check", "rules", "alerts.yml"]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, new RegExp(`SUCCESS: ${rules.length} rules found`), r.output);
  });

  it("passes the rules' unit tests (alerts.test.yml)", async () => {
    const r = await promtool(["test", "rules", "alerts.test.yml"]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /SUCCESS/, r.output);
  });
});

describe("the alert rules", () => {
  it("are alerts with unique names", () => {
    assert.ok(alerts.length > 0);
    assert.deepEqual(
      rules.filter((r) => !r.alert).map((r) => r.record),
      [],
      "recording rules belong in another file",
    );
    assert.equal(new Set(alerts.map((a) => a.alert)).size, alerts.length, "duplicate alert names");
  });

  for (const a of alerts) {
    it(`${a.alert}: a severity, a summary, and a description that names what to run`, () => {
      assert.ok(
        SEVERITIES.includes(a.labels?.["severity"] ?? ""),
        `severity one of ${SEVERITIES.join(", ")}`,
      );
      assert.ok((a.annotations?.["summary"] ?? "").trim().length > 0, "summary");
      const description = a.annotations?.["description"] ?? "";
      assert.ok(description.trim().length > 0, "description");
      assert.match(description, /`[^`]+`/, "the description names a command in backquotes");
    });
  }

  it("each appear in alerts.test.yml both firing and, at some time, not firing", () => {
    const tests = (parse(readFileSync(join(DIR, "alerts.test.yml"), "utf8")) as { tests: TestGroup[] }).tests;
    const firing = new Set<string>();
    const silent = new Set<string>();
    for (const t of tests.flatMap((g) => g.alert_rule_test ?? [])) {
      ((t.exp_alerts ?? []).length > 0 ? firing : silent).add(t.alertname);
    }
    const names = alerts.map((a) => a.alert);
    assert.deepEqual(
      names.filter((n) => !firing.has(n)),
      [],
      "rules never shown firing",
    );
    assert.deepEqual(
      names.filter((n) => !silent.has(n)),
      [],
      "rules never shown not firing",
    );
    const unknown = [...firing, ...silent].filter((n) => !names.includes(n));
    assert.deepEqual(unknown, [], "tests of rules that do not exist");
  });

  it("read only jobs that prometheus.yml scrapes", () => {
    const jobs = new Set(config.scrape_configs.map((s) => s.job_name));
    for (const a of alerts) {
      for (const [, job] of a.expr.matchAll(/\bjob="([^"]+)"/g)) {
        assert.ok(jobs.has(job!), `${a.alert} reads job ${job}, which prometheus.yml does not scrape`);
      }
    }
    assert.ok(jobs.has("etcd"), "etcd is scraped");
  });

  it("read only router_*, registrator_* and pgha_* metrics that our services export", () => {
    const sources = ["router", "registrator", "agent", "shared"]
      .flatMap((d) =>
        (readdirSync(join(ROOT, d), { recursive: true }) as string[])
          .filter((f) => f.endsWith(".ts"))
          .map((f) => join(ROOT, d, f)),
      )
      .map((f) => readFileSync(f, "utf8"))
      .join("\n");
    const exported = new Set([...sources.matchAll(/name: "([a-z_]+)"/g)].map((m) => m[1]));
    for (const a of alerts) {
      // Label values and regular expressions are strings; metric names are not.
      const bare = a.expr.replace(/"[^"]*"/g, '""');
      for (const [name] of bare.matchAll(/\b(?:router|registrator|pgha)_[a-z0-9_]+/g)) {
        const base = name.replace(/_(bucket|count|sum)$/, "");
        assert.ok(
          exported.has(name) || exported.has(base),
          `${a.alert} reads ${name}, which nothing exports`,
        );
      }
    }
  });

  it("are copied into the image beside prometheus.yml, which names them by relative path", () => {
    const files = config.rule_files ?? [];
    assert.ok(files.length > 0, "prometheus.yml has rule_files");
    const dockerfile = readFileSync(join(DIR, "Dockerfile"), "utf8");
    const copies = [...dockerfile.matchAll(/^COPY\s+(.+)$/gm)].map((m) => m[1]!.trim().split(/\s+/));
    /** The directory a COPY puts `src` in: its destination when that ends in /, else the destination's directory. */
    const dest = (src: string) => {
      const to = copies.find((args) => args.slice(0, -1).includes(src))?.at(-1);
      return to === undefined ? undefined : to.endsWith("/") ? to : `${dirname(to)}/`;
    };
    const configDir = dest("prometheus/prometheus.yml");
    assert.equal(configDir, "/etc/prometheus/", "prometheus.yml goes to /etc/prometheus/");
    for (const f of files) {
      assert.ok(!isAbsolute(f), `${f}: relative, so that it resolves in the repository and in the image`);
      assert.ok(readdirSync(DIR).includes(f), `${f} is in prometheus/`);
      assert.equal(dest(`prometheus/${f}`), configDir, `${f} is copied beside prometheus.yml`);
    }
    // The entrypoint renders prometheus.yml (the project's name put in) with each rule file beside it.
    assert.match(dockerfile, /^ENTRYPOINT \["\/usr\/local\/bin\/pgha-prometheus"\]$/m);
    const entrypoint = readFileSync(join(DIR, "entrypoint.sh"), "utf8");
    assert.match(
      entrypoint,
      /sed "s\/__PGHA_PROJECT__\/\$project\/g" \/etc\/prometheus\/prometheus\.yml >"\$dir\/prometheus\.yml"/,
    );
    for (const f of files)
      assert.ok(entrypoint.includes(`cp /etc/prometheus/${f} "$dir/${f}"`), `${f} beside the rendered file`);
    assert.match(entrypoint, /--config\.file="\$dir\/prometheus\.yml"/);
  });

  it("the entrypoint refuses a project name that would change the keep regex, with one line", () => {
    const r = spawnSync("sh", [join(DIR, "entrypoint.sh")], {
      env: { PATH: process.env["PATH"], PGHA_PROJECT: "a|.*" },
      encoding: "utf8",
    });
    assert.equal(r.status, 2);
    assert.equal(
      r.stderr,
      `pgha-prometheus: invalid PGHA_PROJECT "a|.*": expected letters, digits, '_', '.' or '-'\n`,
    );
  });
});
