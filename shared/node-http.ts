/**
 * node:http and node:https, loaded with require rather than `import`.
 *
 * On Node 22 an ESM import of node:http builds a module facade that reads every
 * export, and the lazy `WebSocket` export loads the whole bundled undici and
 * compiles its WebAssembly HTTP parser: about 10 MB resident that no service
 * uses (and a process started with --jitless or --lite-mode, which have no
 * WebAssembly, dies of it). require() leaves the lazy exports alone.
 */
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

export const http = require("node:http") as typeof import("node:http");
export const https = require("node:https") as typeof import("node:https");
