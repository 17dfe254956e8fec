import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parse } from "yaml";
import { archiveFailing, parseArchiverRow } from "../../agent/backup/archive-status.js";
import { summarizeError } from "../../agent/backup/pgbackrest.js";
import { renderPgbackrestConf } from "../../agent/backup/pgbackrest-conf.js";
import { type AgentConfig, parseAgentConfig } from "../../agent/config.js";
import { renderPatroniConfig, toYaml } from "../../agent/patroni-config.js";
import { AGENT_ENV } from "../harness/fixtures.js";

const BASE = AGENT_ENV;
const S3: Record<string, string> = {
  AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
  AWS_SECRET_ACCESS_KEY: "secret/key+1",
  WAL_S3_BUCKET: "my-bucket",
  WALE_S3_ENDPOINT: "https+path://minio.local:9000",
};
const PG = { dataDir: "/data/pgdata", port: 5432, socketDir: "/var/run/postgresql", superuser: "postgres" };

function cfg(env: Record<string, string>): AgentConfig {
  const r = parseAgentConfig([], { ...BASE, ...env });
  if (r.kind !== "config") throw new Error("unreachable");
  return r.config;
}

/** The rendered file as section → key → value. */
function ini(text: string): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  let section = "";
  for (const line of text.split("\n")) {
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out[section] = {};
    } else if (/^[a-z0-9-]+=/.test(line)) {
      const i = line.indexOf("=");
      out[section]![line.slice(0, i)] = line.slice(i + 1);
    }
  }
  return out;
}

describe("pgbackrest.conf rendered from the configuration", () => {
  it("an S3 repository: endpoint, port, path style, keys, retention, asynchronous archiving with a queue limit", () => {
    const c = ini(renderPgbackrestConf(cfg({ ...S3, BACKUP_RETENTION_FULL: "3" }).backup!, PG));
    assert.deepEqual(c["global"], {
      "repo1-type": "s3",
      "repo1-path": "/pgbackrest",
      "repo1-s3-bucket": "my-bucket",
      "repo1-s3-endpoint": "minio.local",
      "repo1-s3-region": "us-east-1",
      "repo1-s3-uri-style": "path",
      "repo1-s3-key": "AKIAEXAMPLE",
      "repo1-s3-key-secret": "secret/key+1",
      "repo1-storage-port": "9000",
      "repo1-retention-full-type": "count",
      "repo1-retention-full": "3",
      "process-max": "2",
      "compress-type": "lz4",
      "start-fast": "y",
      "archive-async": "y",
      "archive-push-queue-max": "4GB",
      "archive-timeout": "60",
      "io-timeout": "60",
      "spool-path": "/var/spool/pgbackrest",
      "log-path": "/var/log/pgbackrest",
      "log-level-console": "warn",
      "log-level-stderr": "off",
      "log-level-file": "info",
    });
    assert.deepEqual(c["demo"], {
      "pg1-path": "/data/pgdata",
      "pg1-port": "5432",
      "pg1-socket-path": "/var/run/postgresql",
      "pg1-user": "postgres",
    });
  });

  const table: [string, Record<string, string>, string, string | undefined][] = [
    ["TLS verification off", { ...S3, BACKUP_S3_VERIFY_TLS: "false" }, "repo1-storage-verify-tls", "n"],
    ["TLS verified: no option", S3, "repo1-storage-verify-tls", undefined],
    ["a CA file", { ...S3, BACKUP_S3_CA_FILE: "/ca.pem" }, "repo1-storage-ca-file", "/ca.pem"],
    ["encryption", { ...S3, BACKUP_CIPHER_PASS: "pass phrase" }, "repo1-cipher-type", "aes-256-cbc"],
    ["diff retention", { ...S3, BACKUP_RETENTION_DIFF: "6" }, "repo1-retention-diff", "6"],
    ["queue limit", { ...S3, BACKUP_ARCHIVE_QUEUE_MAX: "1GiB" }, "archive-push-queue-max", "1GB"],
    ["posix", { BACKUP_POSIX_PATH: "/backup" }, "repo1-path", "/backup"],
    ["posix type", { BACKUP_POSIX_PATH: "/backup" }, "repo1-type", "posix"],
    ["posix has no S3 keys", { BACKUP_POSIX_PATH: "/backup" }, "repo1-s3-key", undefined],
  ];
  for (const [name, env, key, want] of table) {
    it(name, () => assert.equal(ini(renderPgbackrestConf(cfg(env).backup!, PG))["global"]![key], want));
  }

  it("a value with a line break is refused, not written", () => {
    const b = cfg({ ...S3, AWS_SECRET_ACCESS_KEY: "abc\n[global]\nx=y" }).backup!;
    assert.throws(() => renderPgbackrestConf(b, PG), /line break/);
  });
});

describe("patroni.yml with a backup repository", () => {
  const addr = { postgres: { host: "10.0.0.5", port: 5432 }, api: { host: "10.0.0.5", port: 8008 } };
  function rendered(env: Record<string, string>): Record<string, unknown> {
    return parse(toYaml(renderPatroniConfig(cfg(env), addr)), { version: "1.1" }) as Record<string, unknown>;
  }
  function get(v: unknown, path: string): unknown {
    for (const part of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[part];
    return v;
  }
  const table: [string, Record<string, string>, string, unknown][] = [
    ["archiving on", S3, "postgresql.parameters.archive_mode", "on"],
    [
      "archive_command",
      S3,
      "postgresql.parameters.archive_command",
      'pgbackrest --stanza=demo archive-push "%p"',
    ],
    [
      "archive_timeout",
      { ...S3, BACKUP_WAL_SWITCH_INTERVAL: "60" },
      "postgresql.parameters.archive_timeout",
      60,
    ],
    [
      "replicas fetch WAL from the repository",
      S3,
      "postgresql.recovery_conf.restore_command",
      'pgbackrest --stanza=demo archive-get %f "%p"',
    ],
    [
      "pgBackRest first, then basebackup",
      S3,
      "postgresql.create_replica_methods",
      ["pgbackrest", "basebackup"],
    ],
    [
      "the replica hook",
      S3,
      "postgresql.pgbackrest",
      { command: "/usr/local/bin/pgha-backup replica", keep_data: true, no_leader: 1 },
    ],
    [
      "replicas from backups off",
      { ...S3, BACKUP_REPLICA_FROM_BACKUP: "false" },
      "postgresql.create_replica_methods",
      ["basebackup"],
    ],
    ["initdb unless a restore is asked for", S3, "bootstrap.method", undefined],
    [
      "a restore: the custom bootstrap",
      { ...S3, RESTORE_FROM_BACKUP: "latest" },
      "bootstrap.method",
      "pgbackrest",
    ],
    [
      "restore of the latest: recovery to the end of the archive",
      { ...S3, RESTORE_FROM_BACKUP: "latest" },
      "bootstrap.pgbackrest",
      {
        command: "/usr/local/bin/pgha-backup restore",
        keep_existing_recovery_conf: false,
        recovery_conf: {
          restore_command: 'pgbackrest --stanza=demo archive-get %f "%p"',
          recovery_target_timeline: "latest",
        },
      },
    ],
    [
      "point in time: the target, inclusive, then promote",
      { ...S3, RESTORE_TARGET_TIME: "2024-05-01T10:00:00Z" },
      "bootstrap.pgbackrest.recovery_conf",
      {
        restore_command: 'pgbackrest --stanza=demo archive-get %f "%p"',
        recovery_target_timeline: "latest",
        recovery_target_time: "2024-05-01 10:00:00+00",
        recovery_target_action: "promote",
        recovery_target_inclusive: "on",
      },
    ],
    [
      "a restore point: no inclusive setting",
      { ...S3, RESTORE_TARGET_NAME: "before" },
      "bootstrap.pgbackrest.recovery_conf.recovery_target_inclusive",
      undefined,
    ],
    [
      "no secret in patroni.yml",
      S3,
      "postgresql.parameters.archive_command",
      'pgbackrest --stanza=demo archive-push "%p"',
    ],
  ];
  for (const [name, env, path, want] of table)
    it(name, () => assert.deepEqual(get(rendered(env), path), want));

  it("the S3 keys are not in patroni.yml", () => {
    const text = toYaml(renderPatroniConfig(cfg(S3), addr));
    assert.ok(!text.includes("secret/key+1") && !text.includes("AKIAEXAMPLE"));
  });
});

describe("pgBackRest's errors in one line, with a hint", () => {
  const table: [string, string, RegExp][] = [
    [
      "a 403 on HEAD (stanza-create)",
      "2026-11-28 16:17:37.368 P00  ERROR: [039]: HTTP request failed with 403 (Forbidden):\n  *** Path/Query ***:\n  HEAD /b/x\n  authorization: <redacted>",
      /^\[039\]: HTTP request failed with 403 \(Forbidden\) \(check AWS_ACCESS_KEY_ID/,
    ],
    [
      "a spool .error file with S3's code",
      "103\nunable to find a valid repository:\nrepo1: [ProtocolError] unable to load info file 'x':\nProtocolError: HTTP request failed with 403 (Forbidden):\n<Error><Code>InvalidAccessKeyId</Code><Message>The key does not exist.</Message></Error>",
      /^\[103\]: unable to find a valid repository; \[ProtocolError\] unable to load info file 'x'; HTTP 403 Forbidden; InvalidAccessKeyId: The key does not exist\./,
    ],
    [
      "a refused connection",
      "ERROR: [104]: archive-push command encountered error(s):\nrepo1: [HostConnectError] unable to connect to 's3.pgha.test:443 (172.17.0.1)': [111] Connection refused",
      /HostConnectError.*Connection refused.*\(check the endpoint and the network/,
    ],
    [
      "no bucket",
      "ERROR: [039]: x\n<Error><Code>NoSuchBucket</Code></Error>",
      /NoSuchBucket \(check the bucket name/,
    ],
    [
      "a certificate",
      "ERROR: [095]: unable to verify certificate presented by 'h:443'",
      /check the endpoint's certificate/,
    ],
    ["nothing", "", /^no output$/],
  ];
  for (const [name, text, re] of table) {
    it(name, () => {
      const s = summarizeError(text);
      assert.match(s, re);
      assert.ok(!s.includes("\n"));
    });
  }
});

describe("pg_stat_archiver as psql prints it", () => {
  const now = 100_000;
  const table: [string, string, boolean][] = [
    ["healthy: nothing waits", "12|0|00000001000000000000000C|90000||0|0|0", false],
    ["healthy: one segment waits briefly", "12|0|00000001000000000000000C|90000||0|1|95000", false],
    [
      "failing: the last failure is newer than the last success",
      "3|6|000000010000000000000003|1000|000000010000000000000004|2000|2|1000",
      true,
    ],
    ["stalled: a segment has waited past the limit", "3|0|000000010000000000000003|1000||0|1|30000", true],
    [
      "recovered: success after the failures",
      "9|6|000000010000000000000009|99000|000000010000000000000004|2000|0|0",
      false,
    ],
  ];
  for (const [name, row, failing] of table) {
    it(name, () => {
      const s = parseArchiverRow(`${row}\n`);
      assert.ok(s, row);
      assert.equal(archiveFailing(s, now, 60_000), failing);
    });
  }
  it("garbage: null", () => assert.equal(parseArchiverRow("psql: error"), null));
});
