/**
 * Backup schedules: five-field cron expressions in UTC (`0 1 * * 0`), the
 * shorthands `@hourly`, `@daily`, `@weekly`, `@monthly`, an interval
 * `@every 6h`, or `off`. Pure: parse once, then ask for the next occurrence
 * after a moment. options.ts parses them; plan.ts asks them.
 */
import { parseDurationSeconds } from "../../shared/config.js";
import { ParseFailure } from "../../shared/errors.js";

export type Schedule =
  | { readonly kind: "off"; readonly text: string }
  | { readonly kind: "every"; readonly text: string; readonly ms: number }
  | {
      readonly kind: "cron";
      readonly text: string;
      readonly minutes: ReadonlySet<number>;
      readonly hours: ReadonlySet<number>;
      readonly days: ReadonlySet<number>;
      readonly months: ReadonlySet<number>;
      readonly weekdays: ReadonlySet<number>;
      /** Cron's rule: when both day fields are restricted, either may match. */
      readonly daysRestricted: boolean;
      readonly weekdaysRestricted: boolean;
    };

export const SCHEDULE_ACCEPTED =
  "off, a cron expression in UTC such as '0 1 * * 0', @hourly, @daily, @weekly, @monthly, or '@every 6h'";

const SHORTHANDS: Readonly<Record<string, string>> = {
  "@hourly": "0 * * * *",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@weekly": "0 0 * * 0",
  "@monthly": "0 0 1 * *",
};

function field(text: string, min: number, max: number, what: string): Set<number> {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw new ParseFailure(`bad ${what} field ${JSON.stringify(text)}`);
    let lo = min;
    let hi = max;
    if (m[1] !== "*") {
      lo = Number(m[2]);
      hi = m[3] === undefined ? (m[4] === undefined ? lo : max) : Number(m[3]);
    }
    const step = m[4] === undefined ? 1 : Number(m[4]);
    if (lo < min || hi > max || lo > hi || step < 1) {
      throw new ParseFailure(`${what} out of range ${min}-${max} in ${JSON.stringify(text)}`);
    }
    for (let v = lo; v <= hi; v += step) out.add(v);
  }
  return out;
}

export function parseSchedule(raw: string): Schedule {
  const text = raw.trim().replace(/\s+/g, " ");
  if (text === "off" || text === "none" || text === "") return { kind: "off", text: "off" };
  const every = /^@every (\S+)$/.exec(text);
  if (every) {
    const seconds = parseDurationSeconds(every[1]!, 1, 86_400 * 366);
    return { kind: "every", text, ms: seconds * 1000 };
  }
  const expr = SHORTHANDS[text] ?? text;
  const parts = expr.split(" ");
  if (parts.length !== 5) throw new ParseFailure("expected five fields: minute hour day month weekday");
  const [mi, h, d, mo, w] = parts as [string, string, string, string, string];
  const weekdays = field(w, 0, 7, "weekday");
  if (weekdays.has(7)) {
    weekdays.delete(7);
    weekdays.add(0);
  }
  return {
    kind: "cron",
    text,
    minutes: field(mi, 0, 59, "minute"),
    hours: field(h, 0, 23, "hour"),
    days: field(d, 1, 31, "day"),
    months: field(mo, 1, 12, "month"),
    weekdays,
    daysRestricted: d !== "*",
    weekdaysRestricted: w !== "*",
  };
}

function dayMatches(s: Extract<Schedule, { kind: "cron" }>, t: Date): boolean {
  const dom = s.days.has(t.getUTCDate());
  const dow = s.weekdays.has(t.getUTCDay());
  if (s.daysRestricted && s.weekdaysRestricted) return dom || dow;
  if (s.daysRestricted) return dom;
  if (s.weekdaysRestricted) return dow;
  return true;
}

/**
 * The first occurrence strictly after `afterMs` (epoch ms), or null for `off`
 * (and for a cron expression that never matches, such as 31 February).
 */
export function nextOccurrence(s: Schedule, afterMs: number): number | null {
  if (s.kind === "off") return null;
  if (s.kind === "every") return afterMs + s.ms;
  const t = new Date(Math.floor(afterMs / 60_000) * 60_000 + 60_000);
  const limit = afterMs + 5 * 366 * 86_400_000;
  while (t.getTime() <= limit) {
    if (!s.months.has(t.getUTCMonth() + 1)) {
      t.setUTCMonth(t.getUTCMonth() + 1, 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(s, t)) {
      t.setUTCDate(t.getUTCDate() + 1);
      t.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!s.hours.has(t.getUTCHours())) {
      t.setUTCHours(t.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!s.minutes.has(t.getUTCMinutes())) {
      t.setUTCMinutes(t.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return t.getTime();
  }
  return null;
}
