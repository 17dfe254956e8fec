/**
 * The image's HEALTHCHECK: GET /healthz on the admin address (REGISTRATOR_METRICS_ADDR,
 * default 0.0.0.0:8080, asked on loopback). Exit 0 when it answers 200.
 */
import { parseHostPort } from "../shared/host-port.js";
import { DEFAULT_METRICS_ADDR } from "./options.js";

const raw = process.env["REGISTRATOR_METRICS_ADDR"] || DEFAULT_METRICS_ADDR;
let url: string;
try {
  const hp = parseHostPort(raw);
  const host =
    hp.host === "0.0.0.0"
      ? "127.0.0.1"
      : hp.host === "::"
        ? "[::1]"
        : hp.host.includes(":")
          ? `[${hp.host}]`
          : hp.host;
  url = `http://${host}:${hp.port}/healthz`;
} catch {
  process.stderr.write(`healthcheck: REGISTRATOR_METRICS_ADDR ${JSON.stringify(raw)} is not HOST:PORT\n`);
  process.exit(1);
}
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
  process.exit(res.status === 200 ? 0 : 1);
} catch (err) {
  process.stderr.write(`healthcheck: ${url}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
