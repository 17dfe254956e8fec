/**
 * PEM files named by options, read with errors an operator can act on: the option, the file
 * and why it cannot be read (missing, not readable by this account, not PEM). Loads no HTTP
 * client: the registrator runs without WebAssembly, which undici's parser needs.
 */
import { readFileSync } from "node:fs";
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
