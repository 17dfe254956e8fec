/**
 * Lenient readers for decoded JSON (Docker's inspect documents, Patroni's records and
 * REST answers, pgBackRest's info): a field of the wrong type reads as absent, never
 * throws. Callers pick the absent value they need with `??`.
 */
export type JsonObject = Readonly<Record<string, unknown>>;

const EMPTY: JsonObject = Object.freeze({});

/** A JSON object (not an array, not null), or undefined. */
export function asObject(v: unknown): JsonObject | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as JsonObject) : undefined;
}

/** A JSON object's fields, or none for anything else: for reading nested fields in one go. */
export function fields(v: unknown): JsonObject {
  return asObject(v) ?? EMPTY;
}

export function asString(v: unknown): string | undefined {
  return typeof v === "string" ? v : undefined;
}

/** A finite number, or undefined. */
export function asNumber(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** JSON text that holds an object, or null (bad JSON, or another value). */
export function parseJsonObject(text: string): JsonObject | null {
  try {
    return asObject(JSON.parse(text)) ?? null;
  } catch {
    return null;
  }
}
