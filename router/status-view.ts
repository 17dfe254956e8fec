/**
 * The status page's content as a pure function of the router's view (what
 * /status.json serves: /routes plus the time): a tree of elements and text,
 * with no I/O and no runtime imports, so that the same module renders the page
 * on the server (toHtml, every text and attribute escaped) and, loaded by the
 * page itself, again in the browser on each poll (status-client.ts builds the
 * tree with createElement and text nodes). Data only ever becomes text or an
 * attribute value; element and attribute names come from this file.
 *
 * The view is read leniently: it crosses a process boundary (the workers' IPC)
 * and an HTTP one, so a field of the wrong type shows as "–", never throws.
 */

export interface Element {
  readonly t: string;
  readonly a?: Readonly<Record<string, string>>;
  readonly c?: readonly Node[];
}
export type Node = string | Element;

const h = (t: string, a: Record<string, string> | null, ...c: (Node | null | false)[]): Element => {
  const children = c.filter((x): x is Node => x !== null && x !== false);
  return a === null ? { t, c: children } : { t, a, c: children };
};

// --- lenient readers -------------------------------------------------------------------------

type Obj = Record<string, unknown>;
const obj = (x: unknown): Obj => (x !== null && typeof x === "object" && !Array.isArray(x) ? (x as Obj) : {});
const arr = (x: unknown): unknown[] => (Array.isArray(x) ? x : []);
const str = (x: unknown): string | null => (typeof x === "string" ? x : null);
const num = (x: unknown): number | null => (typeof x === "number" && Number.isFinite(x) ? x : null);
const DASH = "–";

// --- formatting --------------------------------------------------------------------------------

/** `HH:MM:SS.d UTC` of a time in ms since the epoch. */
export function clock(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 21)} UTC`;
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function ago(at: number | null, now: number): string {
  return at === null ? "" : `${seconds(Math.max(0, now - at))} ago`;
}

export function bytes(n: number | null): string {
  if (n === null) return DASH;
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** One REST probe as the router last saw it: `/primary 200 primary, 0.4 s ago`. */
function probeText(kind: string, p: Obj, now: number): string {
  const status = num(p["status"]);
  const failures = num(p["failures"]) ?? 0;
  const role = str(p["role"]);
  const when = ago(num(p["at"]), now);
  const answer =
    status === null
      ? `no answer${failures > 1 ? ` (${failures}×)` : ""}`
      : `${status}${role ? ` ${role}` : ""}`;
  return `/${kind} ${answer}${when ? `, ${when}` : ""}`;
}

/** The text of one decision: `switchover pg1 → pg2, 1.2 s, 14 clients held, 0 failed`. */
export function decisionText(d: Obj): string {
  const s = obj(d["switch"]);
  const kind = str(s["kind"]);
  const target = str(d["target"]);
  if (kind !== null && target !== null) {
    const held = num(s["held"]) ?? 0;
    const failed = num(s["failed"]) ?? 0;
    const ms = num(s["ms"]) ?? 0;
    const wait = num(s["waitMsMax"]) ?? 0;
    const from = str(s["from"]);
    const counts = `${plural(held, "client")} held, ${failed} failed${held > 0 ? `, longest wait ${seconds(wait)}` : ""}`;
    switch (kind) {
      case "first":
        return `first primary ${target}, after ${seconds(ms)}, ${counts}`;
      case "resumed":
        return `${target} routed again after ${seconds(ms)}, ${counts}`;
      default:
        return `${kind} ${from ?? DASH} → ${target}, ${seconds(ms)}, ${counts}`;
    }
  }
  switch (str(d["action"])) {
    case "route":
      return `route to ${target ?? DASH}`;
    case "pause":
      return `pause ${target ?? DASH}: new clients held`;
    case "none":
      return "no primary: new clients held";
    default:
      return str(d["action"]) ?? DASH;
  }
}

// --- the page ----------------------------------------------------------------------------------

function route(r: Obj, now: number): Element {
  const scope = str(r["scope"]) ?? DASH;
  const leader = str(r["leader"]);
  const primary = obj(r["primary"]);
  const replicas = obj(r["replicas"]);
  const etcd = obj(r["etcd"]);
  const held = obj(r["held"]);
  const clients = obj(r["clients"]);
  const action = str(primary["action"]);
  const routedTo = str(primary["target"]);
  const eligible = arr(replicas["eligible"]).map(obj);
  const excluded = arr(replicas["excluded"]).map(obj);
  const sessionsOf = (name: string | null): string => {
    const parts: string[] = [];
    if (name !== null && name === routedTo) parts.push(`${num(primary["sessions"]) ?? 0} primary`);
    const e = eligible.find((x) => str(x["name"]) === name);
    if (e !== undefined) parts.push(`${num(e["sessions"]) ?? 0} replica`);
    return parts.length === 0 ? "0" : parts.join(", ");
  };

  const members = arr(r["members"]).map(obj);
  const memberRows = members.map((m) => {
    const name = str(m["name"]);
    const invalid = str(m["invalid"]);
    if (invalid !== null) {
      return h(
        "tr",
        { class: "invalid", "data-member": name ?? "" },
        h("td", null, name ?? DASH),
        h("td", { colspan: "7" }, `invalid record: ${invalid}`),
      );
    }
    const rest = obj(m["rest"]);
    const probes = (["primary", "replica"] as const)
      .filter((k) => rest[k] !== undefined && rest[k] !== null)
      .map((k) => probeText(k, obj(rest[k]), now));
    const isLeader = name !== null && name === leader;
    const role = str(m["role"]) ?? DASH;
    return h(
      "tr",
      { "data-member": name ?? "", "data-role": isLeader ? "leader" : role, class: isLeader ? "leader" : "" },
      h(
        "td",
        null,
        h("strong", null, name ?? DASH),
        isLeader ? h("span", { class: "badge" }, "leader") : null,
      ),
      h("td", null, role),
      h("td", null, str(m["state"]) ?? DASH),
      h("td", { class: "num" }, String(num(m["timeline"]) ?? DASH)),
      h("td", { class: "num" }, bytes(num(m["lagBytes"]))),
      h("td", null, probes.length === 0 ? "not checked" : probes.join("; ")),
      h("td", { class: "num" }, sessionsOf(name)),
      h("td", { class: "addr" }, str(m["address"]) ?? DASH),
    );
  });

  const replicaTargets =
    eligible.length === 0
      ? `none (fallback: ${str(replicas["fallback"]) ?? DASH})`
      : eligible.map((e) => `${str(e["name"]) ?? DASH} (${str(e["address"]) ?? DASH})`).join(", ");
  const replicaWhy = [
    str(replicas["reason"]),
    ...excluded.map((e) => `${str(e["name"]) ?? DASH} ${str(e["reason"]) ?? ""}`.trim()),
  ].filter((x): x is string => x !== null && x !== "");
  const replicaListen = str(r["replicaListen"]);

  const decisions = arr(r["decisions"]).map(obj);
  const routable = action === "route";

  return h(
    "section",
    { class: "route", "data-scope": scope },
    h(
      "h2",
      null,
      `Cluster ${scope} `,
      h("span", { class: `state ${routable ? "ok" : "bad"}` }, routable ? "routable" : (action ?? DASH)),
    ),
    h(
      "p",
      { class: "summary" },
      "leader ",
      h("strong", { "data-leader": leader ?? "" }, leader ?? "none"),
      ` · etcd ${etcd["connected"] === true ? "live" : "unreachable"} (revision ${num(etcd["revision"]) ?? DASH})`,
      r["failover"] !== null && r["failover"] !== undefined
        ? h("span", { class: "state warn" }, "switchover announced")
        : null,
    ),
    h("h3", null, "Where new clients go"),
    h(
      "table",
      { class: "ports" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          h("th", null, "port"),
          h("th", null, "routes to"),
          h("th", null, "why"),
          h("th", null, "held now"),
          h("th", null, "sessions"),
        ),
      ),
      h(
        "tbody",
        null,
        h(
          "tr",
          { "data-port": "primary" },
          h("td", null, `primary ${str(r["listen"]) ?? ""}`.trim()),
          h(
            "td",
            { "data-routed": routedTo ?? "" },
            routedTo === null
              ? `nobody: clients are held`
              : `${routedTo} (${str(primary["address"]) ?? DASH})${routable ? "" : `, ${action}: new clients are held`}`,
          ),
          h("td", null, str(primary["reason"]) ?? DASH),
          h("td", { class: "num" }, String(num(held["primary"]) ?? 0)),
          h("td", { class: "num" }, String(num(clients["primary"]) ?? 0)),
        ),
        replicaListen === null
          ? null
          : h(
              "tr",
              { "data-port": "replica" },
              h("td", null, `replica ${replicaListen}`),
              h("td", null, replicaTargets),
              h("td", null, replicaWhy.length === 0 ? DASH : replicaWhy.join("; ")),
              h("td", { class: "num" }, String(num(held["replica"]) ?? 0)),
              h("td", { class: "num" }, String(num(clients["replica"]) ?? 0)),
            ),
      ),
    ),
    h("h3", null, "Members"),
    h(
      "table",
      { class: "members" },
      h(
        "thead",
        null,
        h(
          "tr",
          null,
          ...["member", "role", "state", "timeline", "lag", "REST check", "sessions", "address"].map((x) =>
            h("th", null, x),
          ),
        ),
      ),
      h("tbody", null, ...memberRows),
    ),
    h("h3", null, "Last decisions"),
    decisions.length === 0
      ? h("p", { class: "empty" }, "none yet")
      : h(
          "ol",
          { class: "decisions" },
          ...decisions.map((d) => {
            const at = num(d["at"]);
            const sw = obj(d["switch"]);
            const kind = str(sw["kind"]);
            return h(
              "li",
              { class: kind === null ? `decision ${str(d["action"]) ?? ""}` : `decision switch ${kind}` },
              h(
                "time",
                at === null ? null : { datetime: new Date(at).toISOString() },
                at === null ? DASH : clock(at),
              ),
              " ",
              h("span", { class: "what" }, decisionText(d)),
              h("span", { class: "why" }, str(d["reason"]) ?? ""),
            );
          }),
        ),
  );
}

/** The content of the page's <main>: every cluster the router serves, and the whole router. */
export function statusTree(view: unknown): Element {
  const v = obj(view);
  const now = num(v["time"]) ?? Date.now();
  const routes = arr(v["routes"]).map(obj);
  const workers = arr(v["workers"]).map(obj);
  return h(
    "div",
    { id: "content" },
    h(
      "p",
      { class: "router" },
      `updated ${clock(now)} · ${num(v["clients"]) ?? 0} client connections open (at most ${num(v["maxConnections"]) ?? DASH} per process)`,
      workers.length === 0 ? "" : ` · ${plural(workers.length, "worker")}`,
    ),
    ...(routes.length === 0
      ? [h("p", { class: "empty" }, "no cluster routed")]
      : routes.map((r) => route(r, now))),
  );
}

// --- HTML on the server ------------------------------------------------------------------------

const ESCAPES: Readonly<Record<string, string>> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** Element and attribute names this module may emit; anything else is a bug, not data. */
const NAME = /^[a-z][a-z0-9-]*$/;

export function toHtml(n: Node): string {
  if (typeof n === "string") return escapeHtml(n);
  if (!NAME.test(n.t)) throw new Error(`bad element name ${n.t}`);
  const attrs = Object.entries(n.a ?? {})
    .map(([k, v]) => {
      if (!NAME.test(k) || k.startsWith("on")) throw new Error(`bad attribute name ${k}`);
      return ` ${k}="${escapeHtml(v)}"`;
    })
    .join("");
  return `<${n.t}${attrs}>${(n.c ?? []).map(toHtml).join("")}</${n.t}>`;
}
