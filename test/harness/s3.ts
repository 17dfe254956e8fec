/**
 * An S3-compatible endpoint for the backup tests: the npm `s3rver` over HTTPS
 * (pgBackRest speaks only TLS to S3), with a CA and a server certificate made
 * by openssl for this run, so that pgBackRest verifies the certificate.
 *
 *   const s3 = await S3Fixture.start({ host: "127.0.0.1", buckets: ["backups"] });
 *   s3.caFile; s3.port; s3.hostName;      // give pgBackRest the CA, the port, the name
 *   await s3.stop();                      // always, in after()
 *
 * The certificate names `s3.pgha.test` and `*.s3.pgha.test` (host-style
 * bucket names), localhost, 127.0.0.1 and the listening address; containers
 * reach it with `--add-host s3.pgha.test:<host>`. s3rver is told that its
 * service endpoint is `pgha.test`, so `s3.pgha.test/<bucket>/…` (path style)
 * and `<bucket>.s3.pgha.test/…` (host style) both address a bucket.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { run } from "./proc.js";

export const S3_HOST_NAME = "s3.pgha.test";
export const S3_SERVICE_ENDPOINT = "pgha.test";
/** The access key s3rver knows (it checks key ids; V4 signatures it does not verify). */
export const S3_ACCESS_KEY = "S3RVER";
export const S3_SECRET_KEY = "S3RVER";

interface S3rverServer {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
}
type S3rverCtor = new (options: Record<string, unknown>) => S3rverServer;

const require = createRequire(import.meta.url);

export interface S3FixtureOptions {
  /** Address to listen on: loopback, or this host's address on Docker's bridge. */
  readonly host: string;
  readonly buckets: readonly string[];
}

/** A CA and a server certificate for `names` (DNS) and `ips`, valid one day. */
export async function makeCertificates(
  dir: string,
  names: readonly string[],
  ips: readonly string[],
): Promise<{ caFile: string; certFile: string; keyFile: string }> {
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.crt");
  const keyFile = join(dir, "server.key");
  const csr = join(dir, "server.csr");
  const certFile = join(dir, "server.crt");
  const ext = join(dir, "server.ext");
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    caKey,
    "-out",
    caFile,
    "-days",
    "1",
    "-subj",
    "/CN=pgha test CA",
  ]);
  await run("openssl", [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    keyFile,
    "-out",
    csr,
    "-subj",
    `/CN=${names[0]}`,
  ]);
  const san = [...names.map((n) => `DNS:${n}`), ...ips.map((ip) => `IP:${ip}`)].join(",");
  writeFileSync(
    ext,
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caFile,
    "-CAkey",
    caKey,
    "-CAcreateserial",
    "-out",
    certFile,
    "-days",
    "1",
    "-extfile",
    ext,
  ]);
  return { caFile, certFile, keyFile };
}

export class S3Fixture {
  private constructor(
    private readonly server: S3rverServer,
    private readonly dir: string,
    readonly host: string,
    readonly port: number,
    readonly caFile: string,
    /** Where s3rver keeps the objects: `<dataDir>/<bucket>/<key>._S3rver_object`. */
    readonly dataDir: string,
  ) {}

  static async start(opts: S3FixtureOptions): Promise<S3Fixture> {
    const dir = mkdtempSync(join(tmpdir(), "pgha-s3-"));
    const ips = [...new Set(["127.0.0.1", opts.host])];
    const certs = await makeCertificates(dir, [S3_HOST_NAME, `*.${S3_HOST_NAME}`, "localhost"], ips);
    const dataDir = join(dir, "data");
    const port = await freePort(opts.host);
    const S3rver = require("s3rver") as S3rverCtor;
    const server = new S3rver({
      address: opts.host,
      port,
      key: readFileSync(certs.keyFile),
      cert: readFileSync(certs.certFile),
      silent: true,
      directory: dataDir,
      serviceEndpoint: S3_SERVICE_ENDPOINT,
      vhostBuckets: false,
      configureBuckets: opts.buckets.map((name) => ({ name })),
    });
    try {
      await server.run();
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    return new S3Fixture(server, dir, opts.host, port, certs.caFile, dataDir);
  }

  get caPem(): string {
    return readFileSync(this.caFile, "utf8");
  }

  async stop(): Promise<void> {
    await this.server.close().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
