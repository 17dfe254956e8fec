/**
 * What the registrator takes from its Docker engine when the command line leaves it
 * out: the default -hostname (engineHostname) and, with `-ip swarm`, the node's swarm
 * address (swarmNodeAddr). One `GET /info`, retried while Docker does not answer yet
 * (or the node is still joining its swarm), for at most `timeoutMs`.
 */
import { ConfigError } from "../shared/errors.js";
import type { DockerApi } from "./docker-api.js";
import {
  engineHostname,
  IP_FROM_SWARM,
  type RegistratorOptions,
  type SwarmInfo,
  swarmNodeAddr,
} from "./options.js";

export const ENGINE_INFO_TIMEOUT_MS = 30_000;

type Info = SwarmInfo & { readonly Name?: unknown; readonly ID?: unknown };

/** The options with hostname and ip filled in from Docker; a ConfigError (exit 2) saying why not. */
export async function completeFromEngine(
  o: RegistratorOptions,
  docker: Pick<DockerApi, "info">,
  timeoutMs = ENGINE_INFO_TIMEOUT_MS,
): Promise<RegistratorOptions> {
  const wantsName = !o.hostnameGiven;
  const wantsIp = o.ip === IP_FROM_SWARM;
  if (!wantsName && !wantsIp) return o;
  let why = "";
  for (const deadline = Date.now() + timeoutMs; ; ) {
    let info: Info | undefined;
    try {
      info = (await docker.info(AbortSignal.timeout(5000))) as Info;
    } catch (err) {
      why = (err as Error).message;
    }
    if (info) {
      const name = wantsName ? engineHostname(info) : o.hostname;
      const node = wantsIp ? swarmNodeAddr(info) : undefined;
      if (name === null) {
        why = "its /info names no engine";
      } else if (node && "error" in node) {
        // A node that is joining says pending; any other state will not change by waiting.
        if (info.Swarm?.LocalNodeState !== "pending")
          throw new ConfigError("ip", `registrator: -ip ${IP_FROM_SWARM}: ${node.error}`);
        why = node.error;
      } else {
        return Object.freeze({ ...o, hostname: name, ip: node ? node.ip : o.ip });
      }
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (wantsName) {
    throw new ConfigError(
      "hostname",
      `registrator: cannot ask Docker for this engine's name, which the default -hostname is made of (${why}): set -hostname or REGISTRATOR_HOSTNAME`,
    );
  }
  throw new ConfigError(
    "ip",
    `registrator: cannot ask Docker for this node's swarm address (-ip ${IP_FROM_SWARM}): ${why}`,
  );
}
