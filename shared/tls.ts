/**
 * PEM files named by options, read with errors an operator can act on: the option, the file
 * and why it cannot be read (missing, not readable by this account, not PEM); and a fetch
 * that checks an https server against a private CA.
 */
import { readFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import { ConfigError } from "./errors.js";

/**
 * Reads a PEM file named by an option, or throws a ConfigError whose one line names the
 * option, the file and why it cannot be read (missing, not readable by this account, empty).
 */
export function readPemFile(path: string, what: string, option: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "no such file"
        : code === "EACCES"
          ? `permission denied for uid ${process.getuid?.() ?? "?"}`
          : code === "EISDIR"
            ? "a directory, not a file"
            : ((err as Error).message ?? String(err));
    throw new ConfigError(option, `cannot read the ${what} ${path} (${option}): ${why}`);
  }
  if (!data.includes("-----BEGIN ")) {
    throw new ConfigError(option, `the ${what} ${path} (${option}) holds no PEM block: expected a PEM file`);
  }
  return data;
}

/** Reads every named file that is set (a ConfigError for the first that cannot be read). */
export function checkPemFiles(
  files: readonly { readonly path: string | undefined; readonly what: string; readonly option: string }[],
): void {
  for (const f of files) if (f.path !== undefined && f.path !== "") readPemFile(f.path, f.what, f.option);
}

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
