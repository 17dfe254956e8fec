/**
 * Where a routed server is: its member name, PostgreSQL address and REST API. Decisions
 * (selection.ts) produce targets; the data plane (backend.ts, conn.ts, spares.ts) connects
 * to them.
 */
export interface Target {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly apiUrl: string | null;
}
