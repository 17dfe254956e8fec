/**
 * The image's HEALTHCHECK: GET /healthz on the admin address (ROUTER_ADMIN_LISTEN,
 * default 0.0.0.0:8080, asked on loopback). Exit 0 when it answers 200.
 */
import { parseHostPort } from "../shared/host-port.js";

const admin = parseHostPort(process.env.ROUTER_ADMIN_LISTEN ?? "0.0.0.0:8080");
const host = admin.host === "0.0.0.0" || admin.host === "::" ? "127.0.0.1" : admin.host;
const url = `http://${host.includes(":") ? `[${host}]` : host}:${admin.port}/healthz`;
fetch(url, { signal: AbortSignal.timeout(3000) }).then(
  (res) => process.exit(res.status === 200 ? 0 : 1),
  () => process.exit(1),
);
