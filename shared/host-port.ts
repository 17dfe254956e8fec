/**
 * Network addresses as the three services write them: `host:port`, with IPv6 hosts
 * bracketed (`[::1]:5432`). Parsers throw ParseFailure, which the option tables
 * (config.ts) turn into one line naming the option.
 */
import { ParseFailure } from "./errors.js";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/** `host:port`, `[v6]:port`, or `host` alone when a default port is given. */
export function parseHostPort(raw: string, defaultPort?: number): HostPort {
  const s = raw.trim();
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9a-fA-F:.%\w]+)\](?::(\d+))?$/.exec(s);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else {
    const idx = s.lastIndexOf(":");
    if (idx === -1) {
      host = s;
      portText = undefined;
    } else {
      host = s.slice(0, idx);
      portText = s.slice(idx + 1);
      if (host.includes(":")) throw new ParseFailure("IPv6 addresses must be bracketed");
    }
  }
  if (host === "" || /[\s/@]/.test(host)) throw new ParseFailure();
  if (portText === undefined) {
    if (defaultPort === undefined) throw new ParseFailure("missing port");
    return Object.freeze({ host, port: defaultPort });
  }
  return Object.freeze({ host, port: parsePort(portText) });
}

/** A TCP port, 1 to 65535 (as config.ts's parseInteger reads integers). */
function parsePort(raw: string): number {
  if (!/^[+-]?\d+$/.test(raw.trim())) throw new ParseFailure();
  const n = Number(raw.trim());
  if (!Number.isSafeInteger(n) || n < 1 || n > 65535) throw new ParseFailure();
  return n;
}
