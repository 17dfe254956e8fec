/**
 * The router's status page on its admin port: `/` (HTML, rendered on the server
 * so that it shows the current state without JavaScript), `/status.json` (what
 * the page polls: the /routes view and the time), and the page's own script and
 * style under `/assets/`. No asset comes from anywhere else, and the page's
 * Content-Security-Policy forbids it. Served by the supervisor (one view of all
 * workers) or, with --workers 0, by the Router itself.
 */
import { readFileSync } from "node:fs";
import type { JsonRoute, PageRoute } from "../shared/admin.js";
import { redactValue } from "../shared/redact.js";
import { statusTree, toHtml } from "./status-view.js";

export const STATUS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HEADERS = {
  "content-security-policy": STATUS_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
};

const STYLE = `
:root { font: 14px/1.4 system-ui, sans-serif; color: #1d232a; background: #f6f7f9; }
body { margin: 0 auto; padding: 1rem 1.5rem; max-width: 72rem; }
h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
h2 { font-size: 1.15rem; margin: 1.2rem 0 .3rem; }
h3 { font-size: .95rem; margin: 1rem 0 .3rem; color: #4a5560; }
section.route { background: #fff; border: 1px solid #d8dde3; border-radius: 6px; padding: .2rem 1rem 1rem; margin: 1rem 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e6e9ed; vertical-align: top; }
th { font-weight: 600; color: #4a5560; font-size: .85rem; }
td.num { text-align: right; white-space: nowrap; }
td.addr, time { font-family: ui-monospace, monospace; font-size: .85rem; white-space: nowrap; }
tr.leader td { background: #eef6ee; }
tr.invalid td { color: #8a1c1c; }
.badge { margin-left: .4rem; font-size: .75rem; padding: 0 .35rem; border-radius: 3px; background: #2f7d32; color: #fff; }
.state { font-size: .8rem; padding: .05rem .4rem; border-radius: 3px; margin-left: .3rem; }
.state.ok { background: #dff0df; color: #1e5b20; }
.state.bad { background: #f7dcdc; color: #8a1c1c; }
.state.warn { background: #fbeccb; color: #6b4b00; }
ol.decisions { list-style: none; padding: 0; margin: 0; }
ol.decisions li { padding: .2rem 0; border-bottom: 1px solid #eef0f2; }
ol.decisions li.switch .what { font-weight: 600; }
.why { display: block; color: #5f6b76; font-size: .85rem; margin-left: 7.5rem; }
p.router, p.empty { color: #5f6b76; }
`;

const ICON =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="#2f7d32"/></svg>';

/** A compiled module beside this one, without its source-map comment (the map is not served). */
function sibling(name: string): string {
  return readFileSync(new URL(`./${name}`, import.meta.url), "utf8").replace(
    /\n\/\/# sourceMappingURL=.*\s*$/,
    "\n",
  );
}

export function renderStatusPage(view: unknown): string {
  const content = toHtml(statusTree(redactValue(view)));
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pgha router status</title>
<link rel="stylesheet" href="assets/status.css">
<link rel="icon" href="assets/icon.svg">
<noscript><meta http-equiv="refresh" content="5"></noscript>
<script type="module" src="assets/status-client.js"></script>
</head>
<body>
<h1>pgha router <span id="live" class="state warn">as rendered by the server</span></h1>
<main id="status">${content}</main>
</body>
</html>
`;
}

/** The view the page shows: the /routes view, stamped with the server's time. */
async function stamped(view: () => unknown): Promise<unknown> {
  return { time: Date.now(), ...((await view()) as Record<string, unknown>) };
}

/** The page's routes for an AdminServer, given how to get the /routes view. */
export function statusRoutes(view: () => unknown): {
  pages: Record<string, PageRoute>;
  json: Record<string, JsonRoute>;
} {
  const client = sibling("status-client.js");
  const renderer = sibling("status-view.js");
  const js = "text/javascript; charset=utf-8";
  return {
    pages: {
      "/": async () => ({
        contentType: "text/html; charset=utf-8",
        body: renderStatusPage(await stamped(view)),
        headers: HEADERS,
      }),
      "/assets/status-client.js": () => ({ contentType: js, body: client, headers: HEADERS }),
      "/assets/status-view.js": () => ({ contentType: js, body: renderer, headers: HEADERS }),
      "/assets/status.css": () => ({ contentType: "text/css; charset=utf-8", body: STYLE, headers: HEADERS }),
      "/assets/icon.svg": () => ({ contentType: "image/svg+xml", body: ICON, headers: HEADERS }),
    },
    json: { "/status.json": () => stamped(view) },
  };
}
