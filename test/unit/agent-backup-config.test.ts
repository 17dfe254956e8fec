import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseEndpoint, parseTargetTime, regionOfEndpoint } from "../../agent/backup/config.js";
import { type AgentConfig, parseAgentConfig } from "../../agent/config.js";
import { ConfigError } from "../../shared/errors.js";
import { AGENT_ENV } from "../harness/fixtures.js";

const BASE = AGENT_ENV;
const S3: Record<string, string> = {
  AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
  AWS_SECRET_ACCESS_KEY: "secret/key+1",
  WAL_S3_BUCKET: "my-bucket",
};

function parse(env: Record<string, string>, files: Record<string, string> = {}): AgentConfig {
  const r = parseAgentConfig([], { ...BASE, ...env }, (p) => {
    const v = files[p];
    if (v === undefined) throw Object.assign(new Error("nope"), { code: "ENOENT" });
    return v;
  });
  if (r.kind !== "config") throw new Error("unreachable");
  return r.config;
}

function get(v: unknown, path: string): unknown {
  for (const part of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[part];
  return v;
}

describe("backup configuration from the environment", () => {
  it("no repository: backups off (archiving off), nothing required", () => {
    assert.equal(parse({}).backup, null);
  });

  const table: [string, Record<string, string>, string, unknown][] = [
    ["the original bucket name", S3, "repo.bucket", "my-bucket"],
    ["the new bucket name wins", { ...S3, BACKUP_S3_BUCKET: "other" }, "repo.bucket", "other"],
    ["repository type s3", S3, "repo.type", "s3"],
    ["AWS endpoint by default", S3, "repo.endpoint", "s3.us-east-1.amazonaws.com"],
    [
      "region from AWS_REGION",
      { ...S3, AWS_REGION: "eu-west-1" },
      "repo.endpoint",
      "s3.eu-west-1.amazonaws.com",
    ],
    ["host-style URIs by default", S3, "repo.uriStyle", "host"],
    [
      "WALE_S3_ENDPOINT: host and port",
      { ...S3, WALE_S3_ENDPOINT: "https+path://minio.local:9000" },
      "repo.endpoint",
      "minio.local",
    ],
    [
      "WALE_S3_ENDPOINT: port",
      { ...S3, WALE_S3_ENDPOINT: "https+path://minio.local:9000" },
      "repo.port",
      9000,
    ],
    [
      "WALE_S3_ENDPOINT: +path",
      { ...S3, WALE_S3_ENDPOINT: "https+path://minio.local:9000" },
      "repo.uriStyle",
      "path",
    ],
    [
      "WALE_S3_ENDPOINT: +virtualhost",
      { ...S3, WALE_S3_ENDPOINT: "https+virtualhost://s3.example.com" },
      "repo.uriStyle",
      "host",
    ],
    [
      "WALE_S3_ENDPOINT: region from an AWS endpoint",
      { ...S3, WALE_S3_ENDPOINT: "https+virtualhost://s3-eu-central-1.amazonaws.com:443" },
      "repo.region",
      "eu-central-1",
    ],
    [
      "BACKUP_S3_ENDPOINT wins over WALE_S3_ENDPOINT",
      { ...S3, WALE_S3_ENDPOINT: "https://a.example", BACKUP_S3_ENDPOINT: "b.example:8443" },
      "repo.endpoint",
      "b.example",
    ],
    [
      "BACKUP_S3_URI_STYLE wins",
      { ...S3, WALE_S3_ENDPOINT: "https+path://a.example", BACKUP_S3_URI_STYLE: "host" },
      "repo.uriStyle",
      "host",
    ],
    ["BACKUP_S3_REGION", { ...S3, BACKUP_S3_REGION: "ap-south-1" }, "repo.region", "ap-south-1"],
    ["TLS verified by default", S3, "repo.verifyTls", true],
    ["TLS verification off", { ...S3, BACKUP_S3_VERIFY_TLS: "false" }, "repo.verifyTls", false],
    ["a CA file", { ...S3, BACKUP_S3_CA_FILE: "/etc/ca.pem" }, "repo.caFile", "/etc/ca.pem"],
    ["repository path default", S3, "repo.path", "/pgbackrest"],
    [
      "WALE_S3_PREFIX gives bucket and path",
      { ...S3, WAL_S3_BUCKET: "", WALE_S3_PREFIX: "s3://walbucket/spilo/demo/" },
      "repo.path",
      "/spilo/demo",
    ],
    [
      "WALE_S3_PREFIX bucket",
      { AWS_ACCESS_KEY_ID: "a", AWS_SECRET_ACCESS_KEY: "b", WALE_S3_PREFIX: "s3://walbucket/x" },
      "repo.bucket",
      "walbucket",
    ],
    ["posix repository", { BACKUP_POSIX_PATH: "/backup/" }, "repo", { type: "posix", path: "/backup" }],
    ["stanza = scope", S3, "stanza", "demo"],
    ["stanza named", { ...S3, BACKUP_STANZA: "main" }, "stanza", "main"],
    ["original threshold MB", { ...S3, WALE_BACKUP_THRESHOLD_MEGABYTES: "512" }, "replica.thresholdMb", 512],
    [
      "original threshold %",
      { ...S3, WALE_BACKUP_THRESHOLD_PERCENTAGE: "50" },
      "replica.thresholdPercent",
      50,
    ],
    ["default thresholds", S3, "replica", { enabled: true, thresholdMb: 102400, thresholdPercent: 30 }],
    [
      "new threshold name wins",
      { ...S3, WALE_BACKUP_THRESHOLD_MEGABYTES: "512", BACKUP_REPLICA_THRESHOLD_MB: "64" },
      "replica.thresholdMb",
      64,
    ],
    ["replicas from backups off", { ...S3, BACKUP_REPLICA_FROM_BACKUP: "false" }, "replica.enabled", false],
    [
      "retention",
      { ...S3, BACKUP_RETENTION_FULL: "4", BACKUP_RETENTION_DIFF: "3" },
      "retention",
      { full: 4, diff: 3 },
    ],
    ["queue limit", { ...S3, BACKUP_ARCHIVE_QUEUE_MAX: "512MiB" }, "archive.queueMax", "512MB"],
    ["full schedule", { ...S3, BACKUP_FULL_SCHEDULE: "@daily" }, "schedule.full.text", "@daily"],
    ["diff schedule off", { ...S3, BACKUP_DIFF_SCHEDULE: "off" }, "schedule.diff.kind", "off"],
    ["no restore by default", S3, "restore", null],
    [
      "restore the latest backup",
      { ...S3, RESTORE_FROM_BACKUP: "latest" },
      "restore",
      { set: "latest", target: { type: "latest" }, inclusive: true, timeline: "latest" },
    ],
    [
      "restore a named backup",
      { ...S3, RESTORE_FROM_BACKUP: "20240101-010000F" },
      "restore.set",
      "20240101-010000F",
    ],
    [
      "a time target implies a restore",
      { ...S3, RESTORE_TARGET_TIME: "2024-05-01T10:00:00Z" },
      "restore.target.value",
      "2024-05-01 10:00:00+00",
    ],
    [
      "an LSN target",
      { ...S3, RESTORE_TARGET_LSN: "0/3000060" },
      "restore.target",
      { type: "lsn", value: "0/3000060" },
    ],
    [
      "an xid target",
      { ...S3, RESTORE_TARGET_XID: "1234" },
      "restore.target",
      { type: "xid", value: "1234" },
    ],
    ["a named target", { ...S3, RESTORE_TARGET_NAME: "before-upgrade" }, "restore.target.type", "name"],
    [
      "exclusive target",
      { ...S3, RESTORE_TARGET_LSN: "0/1", RESTORE_TARGET_INCLUSIVE: "false" },
      "restore.inclusive",
      false,
    ],
  ];
  for (const [name, env, path, want] of table) {
    it(name, () => assert.deepEqual(get(parse(env).backup, path), want));
  }

  it("secrets from *_FILE", () => {
    const b = parse(
      { WAL_S3_BUCKET: "bkt", AWS_ACCESS_KEY_ID_FILE: "/run/id", AWS_SECRET_ACCESS_KEY_FILE: "/run/key" },
      { "/run/id": "AKIA\n", "/run/key": "s3cr3t\n" },
    ).backup;
    assert.equal(get(b, "repo.accessKeyId"), "AKIA");
    assert.equal(get(b, "repo.secretAccessKey"), "s3cr3t");
  });

  it("the metrics address: default, and off", () => {
    assert.deepEqual(parse({}).metricsListen, { host: "0.0.0.0", port: 8009 });
    assert.equal(parse({ AGENT_METRICS_LISTEN: "off" }).metricsListen, null);
  });

  const errors: [string, Record<string, string>, RegExp][] = [
    ["a bucket without keys", { WAL_S3_BUCKET: "bkt" }, /needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/],
    ["two repositories", { ...S3, BACKUP_POSIX_PATH: "/backup" }, /expected one repository/],
    ["a bad bucket", { ...S3, WAL_S3_BUCKET: "No_Such" }, /invalid bucket "No_Such"/],
    ["plain http", { ...S3, WALE_S3_ENDPOINT: "http://minio:9000" }, /over https only/],
    ["a relative posix path", { BACKUP_POSIX_PATH: "backup" }, /invalid BACKUP_POSIX_PATH/],
    ["a bad schedule", { ...S3, BACKUP_FULL_SCHEDULE: "every day" }, /BACKUP_FULL_SCHEDULE.*cron expression/],
    ["a bad cron field", { ...S3, BACKUP_DIFF_SCHEDULE: "0 25 * * *" }, /hour out of range/],
    ["two targets", { ...S3, RESTORE_TARGET_XID: "5", RESTORE_TARGET_LSN: "0/1" }, /at most one target/],
    ["a time without zone", { ...S3, RESTORE_TARGET_TIME: "2024-05-01 10:00:00" }, /with its zone/],
    ["a bad LSN", { ...S3, RESTORE_TARGET_LSN: "12345" }, /invalid RESTORE_TARGET_LSN/],
    ["a bad label", { ...S3, RESTORE_FROM_BACKUP: "yesterday" }, /invalid RESTORE_FROM_BACKUP/],
    ["a restore without repository", { RESTORE_FROM_BACKUP: "latest" }, /RESTORE_\* needs a repository/],
    [
      "a target with restore off",
      { ...S3, RESTORE_FROM_BACKUP: "off", RESTORE_TARGET_XID: "5" },
      /is off but/,
    ],
    ["a bad queue size", { ...S3, BACKUP_ARCHIVE_QUEUE_MAX: "lots" }, /BACKUP_ARCHIVE_QUEUE_MAX.*a size/],
  ];
  for (const [name, env, re] of errors) {
    it(`rejects ${name} with one line`, () => {
      assert.throws(
        () => parse(env),
        (err: unknown) => err instanceof ConfigError && re.test(err.message) && !err.message.includes("\n"),
      );
    });
  }

  it("a bad secret value is not echoed", () => {
    assert.throws(
      () => parse({ ...S3, AWS_SECRET_ACCESS_KEY: "x", BACKUP_S3_VERIFY_TLS: "maybe" }),
      (err: unknown) => err instanceof ConfigError && !err.message.includes("secret/key"),
    );
  });
});

describe("endpoints, regions and times", () => {
  const endpoints: [string, unknown][] = [
    ["s3.example.com", { host: "s3.example.com", port: undefined, style: undefined }],
    ["https://s3.example.com:8443/", { host: "s3.example.com", port: 8443, style: undefined }],
    ["https+path://10.0.0.2:9000", { host: "10.0.0.2", port: 9000, style: "path" }],
    ["https+subdomain://s3.example.com", { host: "s3.example.com", port: undefined, style: "host" }],
  ];
  for (const [raw, want] of endpoints)
    it(`endpoint ${raw}`, () => assert.deepEqual(parseEndpoint(raw, "X"), want));

  const regions: [string, string | undefined][] = [
    ["s3.eu-west-1.amazonaws.com", "eu-west-1"],
    ["s3-us-west-2.amazonaws.com", "us-west-2"],
    ["s3.amazonaws.com", undefined],
    ["minio.local", undefined],
  ];
  for (const [host, want] of regions)
    it(`region of ${host}`, () => assert.equal(regionOfEndpoint(host), want));

  const times: [string, string][] = [
    ["2024-05-01T10:00:00Z", "2024-05-01 10:00:00+00"],
    ["2024-05-01 12:00:00+02", "2024-05-01 10:00:00+00"],
    ["2024-05-01 12:30:00.123456+02:30", "2024-05-01 10:00:00.123456+00"],
    ["2024-05-01T10:00Z", "2024-05-01 10:00:00+00"],
  ];
  for (const [raw, want] of times) it(`time ${raw}`, () => assert.equal(parseTargetTime(raw).value, want));
});
