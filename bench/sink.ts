/**
 * An upstream for the idle-client memory part: PostgreSQL here accepts 300
 * connections, the memory part needs 8 000. The sink speaks just enough of the
 * protocol for an idle session: it answers SSLRequest/GSSENCRequest with 'N' and a
 * StartupMessage with AuthenticationOk, BackendKeyData and ReadyForQuery, then
 * ignores the client until it leaves. Beside it, a REST endpoint answering
 * /primary with 200 as Patroni's does, so that a router or HAProxy checking it
 * routes there.
 *
 *   node dist/bench/sink.js      # prints {"pgPort":N,"restPort":M} once listening
 */
import http from "node:http";
import net from "node:net";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

function answer(): Buffer {
  const auth = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]); // 'R' AuthenticationOk
  const key = Buffer.alloc(13);
  key.write("K", 0);
  key.writeInt32BE(12, 1);
  key.writeInt32BE(process.pid, 5);
  key.writeInt32BE(0x5eed, 9);
  const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]); // 'Z' ReadyForQuery, idle
  return Buffer.concat([auth, key, ready]);
}
const ANSWER = answer();
const NO = Buffer.from("N");

const pg = net.createServer((s) => {
  let buf = Buffer.alloc(0);
  let started = false;
  s.on("error", () => s.destroy());
  s.on("data", (chunk: Buffer) => {
    if (started) return;
    buf = Buffer.concat([buf, chunk]);
    while (!started && buf.length >= 8) {
      const len = buf.readInt32BE(0);
      if (len < 8 || len > 10_000) return void s.destroy();
      if (buf.length < len) return;
      const code = buf.readInt32BE(4);
      buf = buf.subarray(len);
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) s.write(NO);
      else if (code === CANCEL_REQUEST) s.end();
      else {
        started = true;
        s.write(ANSWER);
      }
    }
  });
});

const rest = http.createServer((req, res) => {
  const primary = req.url === "/primary" || req.url === "/" || req.url === "/read-write";
  res.writeHead(primary ? 200 : 503, { "content-type": "application/json" });
  res.end(JSON.stringify({ state: "running", role: primary ? "master" : "unknown" }));
});

pg.listen(0, "127.0.0.1", () => {
  rest.listen(0, "127.0.0.1", () => {
    const pgPort = (pg.address() as net.AddressInfo).port;
    const restPort = (rest.address() as net.AddressInfo).port;
    process.stdout.write(`${JSON.stringify({ pgPort, restPort })}\n`);
  });
});
