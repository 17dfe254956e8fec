/**
 * The naive reference point: a `socket.pipe` TCP proxy to one fixed address, the
 * ten lines anyone would write first. No health checks, no failover.
 *
 *   node dist/bench/naive-proxy.js LISTEN_PORT TARGET_HOST TARGET_PORT
 */
import net from "node:net";

const [listenPort, host, port] = process.argv.slice(2);
net
  .createServer((client) => {
    const up = net.connect({ host: host!, port: Number(port) });
    client.pipe(up).pipe(client);
    client.on("error", () => up.destroy());
    up.on("error", () => client.destroy());
  })
  .listen(Number(listenPort), "127.0.0.1", () => process.stdout.write("listening\n"));
