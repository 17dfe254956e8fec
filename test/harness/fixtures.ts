/** Fixture files under test/fixtures/, read from the source tree (tests run from dist/). */
import { readFileSync } from "node:fs";

const root = new URL("../../../test/fixtures/", import.meta.url);

export function fixturePath(relative: string): string {
  return new URL(relative, root).pathname;
}

export function readJsonFixture(relative: string): unknown {
  return JSON.parse(readFileSync(fixturePath(relative), "utf8"));
}

/** Recursively freezes a value, so a test proves the code under test never mutates its input. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/** A fixture tests may patch freely (a deep copy). */
// biome-ignore lint/suspicious/noExplicitAny: fixtures are patched freely in tests
export type Loose = Record<string, any>;
export function mutableFixture(relative: string): Loose {
  return structuredClone(readJsonFixture(relative)) as Loose;
}

/** The agent's required environment, with the address given (no discovery), for its unit tests. */
export const AGENT_ENV: Readonly<Record<string, string>> = Object.freeze({
  NAME: "pg1",
  PATRONI_SCOPE: "demo",
  ETCD_HOST_PORT: "etcd:2379",
  DOCKER_HOST_IP: "10.0.0.5",
  POSTGRES_USERNAME: "admin",
  POSTGRES_PASSWORD: "a",
  REPLICATION_PASSWORD: "b",
  SUPERUSER_PASSWORD: "c",
  RESTAPI_PASSWORD: "d",
  PG_MAJOR: "17",
});
