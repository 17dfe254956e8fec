import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { haproxyConfig } from "../../bench/haproxy.js";

describe("HAProxy configuration for Patroni", () => {
  const servers = [
    { name: "pg1", host: "127.0.0.1", port: 5431, restPort: 8001 },
    { name: "pg2", host: "127.0.0.1", port: 5432, restPort: 8002 },
  ];
  const cfg = haproxyConfig({
    maxconn: 1000,
    listens: [
      { name: "pg_docs", port: 6000, profile: "docs", servers },
      { name: "pg_fast", port: 6001, profile: "fast", servers },
    ],
  });

  it("checks each member's REST /primary in TCP mode, as Patroni's template does", () => {
    for (const line of [
      "\tmode tcp",
      "\tretries 2",
      "\ttimeout connect 4s",
      "\ttimeout check 5s",
      "\toption httpchk GET /primary",
      "\thttp-check expect status 200",
      "\tserver pg1 127.0.0.1:5431 maxconn 100 check port 8001",
      "\tserver pg2 127.0.0.1:5432 maxconn 100 check port 8002",
    ]) {
      assert.ok(cfg.split("\n").includes(line), `missing ${JSON.stringify(line)}`);
    }
  });

  it("the template's check timing and the tighter one, each shutting sessions down on mark-down", () => {
    const defaults = cfg.split("\n").filter((l) => l.startsWith("\tdefault-server"));
    assert.deepEqual(defaults, [
      "\tdefault-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions",
      "\tdefault-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions",
    ]);
  });

  it("a REST API over https: the check speaks TLS, checked against the CA on the agents' name; haproxy -c takes it", () => {
    const ca = "/etc/ssl/certs/ca-certificates.crt";
    const tlsCfg = haproxyConfig({
      maxconn: 100,
      listens: [
        {
          name: "pg_tls",
          port: 6002,
          profile: "fast",
          servers: [{ ...servers[0]!, restTls: { caFile: ca, name: "pgha-agent" } }],
        },
      ],
    });
    assert.ok(
      tlsCfg
        .split("\n")
        .includes(
          `\tserver pg1 127.0.0.1:5431 maxconn 100 check port 8001 check-ssl verify required ca-file ${ca} verifyhost pgha-agent`,
        ),
      tlsCfg,
    );
    const dir = mkdtempSync(join(tmpdir(), "pgha-haproxy-"));
    try {
      writeFileSync(join(dir, "haproxy.cfg"), tlsCfg);
      execFileSync("haproxy", ["-c", "-q", "-f", join(dir, "haproxy.cfg")], { stdio: "pipe" });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
