/**
 * fetch for a server whose certificate a private CA signed (the agent's calls to its own
 * Patroni REST API over https). Apart from shared/tls.ts: undici needs WebAssembly, which the
 * registrator runs without.
 */
import { readFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";

export type CaFetch = (url: string, init?: RequestInit) => Promise<Response>;

/**
 * fetch for a server whose certificate a private CA signed (`caFile`), the URL's host being
 * the name checked; `caFile` null: the global fetch, for http.
 */
export function caFetch(caFile: string | null): CaFetch {
  if (caFile === null) return (url, init) => fetch(url, init);
  const dispatcher = new Agent({ connect: { ca: readFileSync(caFile) } });
  return async (url, init) =>
    (await undiciFetch(url, {
      ...(init as object),
      dispatcher,
    } as Parameters<typeof undiciFetch>[1])) as unknown as Response;
}
