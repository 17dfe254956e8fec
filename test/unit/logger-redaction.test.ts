import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger } from "../../shared/logger.js";
import { redactString } from "../../shared/redact.js";

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      cb();
    },
  });
  const log = createLogger({ name: "test", level: "debug" }, stream);
  return { log, lines, text: () => lines.join("\n") };
}

const SECRET = "s3cr3t-Pa55";

describe("secret redaction in logs", () => {
  it("writes JSON lines with level, service and message", () => {
    const c = capture();
    c.log.info({ scope: "demo" }, "hello");
    const line = JSON.parse(c.lines[0]!);
    assert.equal(line.level, "info");
    assert.equal(line.service, "test");
    assert.equal(line.msg, "hello");
    assert.equal(line.scope, "demo");
  });

  const cases: [string, (log: ReturnType<typeof capture>["log"]) => void][] = [
    [
      "URL credentials in a field",
      (l) => l.info({ url: `postgres://admin:${SECRET}@db:5432/app` }, "connect"),
    ],
    ["URL credentials in the message", (l) => l.info(`connecting to postgres://admin:${SECRET}@db:5432/app`)],
    [
      "URL credentials in a format argument",
      (l) => l.info("connecting to %s", `etcd://root:${SECRET}@etcd:2379`),
    ],
    ["password keys", (l) => l.info({ password: SECRET, user: "admin" }, "x")],
    [
      "nested password-like keys",
      (l) => l.info({ cfg: { auth: { superuser_password: SECRET, restapiPasswd: SECRET } } }, "x"),
    ],
    ["PGPASSWORD in an env object", (l) => l.info({ env: { PGPASSWORD: SECRET, HOME: "/x" } }, "spawn")],
    ["PGPASSWORD= in a string", (l) => l.info({ cmd: `PGPASSWORD=${SECRET} psql -h db` }, "run")],
    ["authorization headers", (l) => l.info({ headers: { authorization: `Basic ${SECRET}` } }, "req")],
    ["authorization in text", (l) => l.warn(`sent Authorization: Bearer ${SECRET}`)],
    [
      "libpq conninfo password",
      (l) => l.info({ dsn: `host=db user=admin password=${SECRET} dbname=app` }, "dsn"),
    ],
    [
      "error messages and stacks",
      (l) => l.error({ err: new Error(`auth failed for postgres://u:${SECRET}@h/db`) }, "failed"),
    ],
    [
      "error fields",
      (l) => {
        const e = Object.assign(new Error("boom"), { password: SECRET, url: `http://u:${SECRET}@h:8008/` });
        l.error({ err: e }, "failed");
      },
    ],
    ["child bindings", (l) => l.child({ dsn: `postgres://u:${SECRET}@h/db` }).info("child")],
  ];
  for (const [name, emit] of cases) {
    it(`redacts ${name}`, () => {
      const c = capture();
      emit(c.log);
      assert.ok(c.lines.length > 0, "a line was written");
      assert.ok(!c.text().includes(SECRET), `secret leaked: ${c.text()}`);
      assert.match(c.text(), /\[REDACTED\]/);
    });
  }

  it("keeps the useful parts of a redacted URL", () => {
    assert.equal(redactString("postgres://admin:pw@db:5432/app"), "postgres://admin:[REDACTED]@db:5432/app");
    assert.equal(redactString("postgres://db:5432/app"), "postgres://db:5432/app");
    assert.equal(redactString("no secrets here: host=db port=5432"), "no secrets here: host=db port=5432");
  });

  it("keeps errors' type and message", () => {
    const c = capture();
    c.log.error({ err: new TypeError("bad thing") }, "oops");
    const line = JSON.parse(c.lines[0]!);
    assert.equal(line.err.type, "TypeError");
    assert.equal(line.err.message, "bad thing");
    assert.match(line.err.stack, /TypeError: bad thing/);
  });
});

describe("redaction of the forms a review found missing", () => {
  const table: [string, string, string][] = [
    // name, input, what must remain (the secret must not)
    ["an agent env entry", "PATRONI_SUPERUSER_PASSWORD=x1-secret", "PATRONI_SUPERUSER_PASSWORD=[REDACTED]"],
    [
      "an S3 secret key",
      "AWS_SECRET_ACCESS_KEY=x1-secret AWS_ACCESS_KEY_ID=AKIA1",
      "AWS_ACCESS_KEY_ID=AKIA1",
    ],
    ["JSON text", '{"password":"x1-secret","user":"u"}', '"user":"u"'],
    ["pgbackrest.conf", "repo1-cipher-pass=x1-secret", "repo1-cipher-pass=[REDACTED]"],
    [
      "a URL password with a slash",
      "postgres://u:pa/x1-secret@h:5432/db",
      "postgres://u:[REDACTED]@h:5432/db",
    ],
    ["a quoted value with spaces", 'secret_key = "x1-secret and more"', 'secret_key = "[REDACTED]"'],
  ];
  for (const [name, input, kept] of table) {
    it(name, () => {
      const out = redactString(input);
      assert.ok(!out.includes("x1-secret"), out);
      assert.ok(out.includes(kept), out);
    });
  }

  it("an environment array, as docker inspect shows it", () => {
    const c = capture();
    c.log.info({ Env: ["PGPASSWORD=x1-secret", "RESTAPI_PASSWORD=x1-secret", "HOME=/root"] }, "inspect");
    assert.ok(!c.text().includes("x1-secret"), c.text());
    assert.match(c.text(), /HOME=\/root/);
  });

  it("leaves look-alikes alone", () => {
    for (const s of ["password_encryption=scram-sha-256", "http://127.0.0.1:8008/patroni", "key=value"]) {
      assert.equal(redactString(s), s);
    }
  });
});
