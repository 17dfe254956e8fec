#!/usr/bin/env node
/** registrator [flags] etcd://HOST:PORT[,HOST:PORT…][/PREFIX] — wiring only; see app.ts. */
import { accessSync, constants } from "node:fs";
import { hostname } from "node:os";
import { ConfigError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { installShutdown } from "../shared/shutdown.js";
import { RegistratorApp } from "./app.js";
import { DockerApi } from "./docker-api.js";
import { completeFromEngine } from "./engine-identity.js";
import { type LoadedOptions, parseOptions } from "./options.js";

let loaded: LoadedOptions;
try {
  loaded = parseOptions(process.argv.slice(2), process.env, hostname());
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
if (loaded.kind === "help") {
  process.stdout.write(loaded.text);
  process.exit(0);
}
let o = loaded.options;
try {
  // The default -hostname (unique per host, stable across restarts) and -ip swarm come from Docker.
  o = await completeFromEngine(o, DockerApi.forEndpoint(o.dockerHost));
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message}\n`);
  process.exit(2);
}
for (const [flag, file] of [
  ["etcd-ca", o.etcdCa],
  ["etcd-cert", o.etcdCert],
  ["etcd-key", o.etcdKey],
] as const) {
  if (file === undefined) continue;
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? "unreadable";
    process.stderr.write(`registrator: cannot read the -${flag} file ${JSON.stringify(file)} (${why})\n`);
    process.exit(2);
  }
}
const log = createLogger({ name: "registrator", level: o.logLevel });
log.info(
  {
    etcd: o.registry.hosts,
    prefix: o.registry.prefix || "/",
    hostname: o.hostname,
    ...(o.ip ? { ip: o.ip } : {}),
    docker: o.dockerHost.url,
    ttl: o.ttl,
    resync: o.resync,
    internal: o.internal,
    explicit: o.explicit,
    cleanup: o.cleanup,
    deregister: o.deregister,
    requireHealthy: o.requireHealthy,
    releaseDeadLeaders: o.releaseDeadLeaders,
    restartJoined: o.restartJoined,
    ...(o.releaseDeadLeaders ? { patroniNamespace: o.patroniNamespace } : {}),
  },
  "starting",
);
const app = new RegistratorApp(o, log);
installShutdown({ stopAccepting: () => app.stopAccepting(), close: () => app.close() }, log);
app.start().catch((err: unknown) => {
  log.fatal({ err }, "could not start");
  void app.close().finally(() => process.exit(1));
});
