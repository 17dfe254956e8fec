/**
 * Docker's event stream, decoded: newline-delimited JSON whose lines may be split
 * across chunks (and multi-byte characters across chunk boundaries), decoded
 * leniently into container events. Pure apart from the decoder's buffer.
 */
import { StringDecoder } from "node:string_decoder";

/** The container actions the registrator subscribes to. */
export const WATCHED_ACTIONS = [
  "start",
  "unpause",
  "die",
  "oom",
  "stop",
  "kill",
  "destroy",
  "pause",
  "health_status",
  "rename",
] as const;
export type WatchedAction = (typeof WATCHED_ACTIONS)[number];

export interface ContainerEvent {
  readonly id: string;
  readonly action: WatchedAction;
  /** `kill`: the signal sent (a number or a name, as Docker reports it). */
  readonly signal?: string;
  /** `health_status`: healthy, unhealthy or starting. */
  readonly health?: string;
  readonly name?: string;
  /** When the daemon emitted it, in ms since the epoch (its `timeNano`, else `time`). */
  readonly at?: number;
  /** `die`: the exit code of the container's init process (the event's `exitCode`). */
  readonly exitCode?: number;
}

/** Lines longer than this are dropped as malformed (a real event is well under 64 KiB). */
export const MAX_LINE_BYTES = 1024 * 1024;

export class JsonLineDecoder {
  private readonly text = new StringDecoder("utf8");
  private buffer = "";

  /** Feeds a chunk; returns the complete lines' values and how many lines were not JSON. */
  push(chunk: Buffer | string): { values: unknown[]; malformed: number } {
    this.buffer += typeof chunk === "string" ? chunk : this.text.write(chunk);
    const values: unknown[] = [];
    let malformed = 0;
    let nl = this.buffer.indexOf("\n");
    while (nl !== -1) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line !== "") {
        try {
          values.push(JSON.parse(line));
        } catch {
          malformed++;
        }
      }
      nl = this.buffer.indexOf("\n");
    }
    if (this.buffer.length > MAX_LINE_BYTES) {
      this.buffer = "";
      malformed++;
    }
    return { values, malformed };
  }
}

const TERMINATING_SIGNALS = new Set([
  "2",
  "3",
  "9",
  "15",
  "SIGINT",
  "SIGQUIT",
  "SIGKILL",
  "SIGTERM",
  "INT",
  "QUIT",
  "KILL",
  "TERM",
]);

/** True for a kill event that ends the container (not e.g. SIGHUP sent to reload it). */
export function isTerminatingSignal(signal: string | undefined): boolean {
  return signal === undefined || TERMINATING_SIGNALS.has(signal.toUpperCase());
}

/** A container event we act on, or null for anything else (other types, other actions, junk). */
export function decodeEvent(raw: unknown): ContainerEvent | null {
  if (raw === null || typeof raw !== "object") return null;
  const ev = raw as Record<string, unknown>;
  const type = ev["Type"] ?? ev["type"];
  if (type !== undefined && type !== "container") return null;
  const actor = (ev["Actor"] ?? {}) as Record<string, unknown>;
  const id = typeof actor["ID"] === "string" ? actor["ID"] : typeof ev["id"] === "string" ? ev["id"] : "";
  if (!/^[0-9a-f]{12,64}$/.test(id)) return null;
  const rawAction =
    typeof ev["Action"] === "string" ? ev["Action"] : typeof ev["status"] === "string" ? ev["status"] : "";
  const colon = rawAction.indexOf(":");
  const action = (colon === -1 ? rawAction : rawAction.slice(0, colon)).trim();
  if (!(WATCHED_ACTIONS as readonly string[]).includes(action)) return null;
  const attrs = (actor["Attributes"] ?? {}) as Record<string, unknown>;
  const out: { -readonly [K in keyof ContainerEvent]: ContainerEvent[K] } = {
    id,
    action: action as WatchedAction,
  };
  if (typeof attrs["name"] === "string") out.name = attrs["name"];
  const nano = ev["timeNano"];
  const sec = ev["time"];
  if (typeof nano === "number" && Number.isFinite(nano) && nano > 0) out.at = Math.floor(nano / 1e6);
  else if (typeof sec === "number" && Number.isFinite(sec) && sec > 0) out.at = sec * 1000;
  if (action === "kill" && typeof attrs["signal"] === "string") out.signal = attrs["signal"];
  if (action === "die" && typeof attrs["exitCode"] === "string" && /^\d{1,3}$/.test(attrs["exitCode"])) {
    out.exitCode = Number(attrs["exitCode"]);
  }
  if (action === "health_status" && colon !== -1) out.health = rawAction.slice(colon + 1).trim();
  return Object.freeze(out);
}
