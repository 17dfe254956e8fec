/** Docker errors as ours: the API's and the socket's errors converted where Docker is called. */
import { PgHaError } from "../shared/errors.js";

export class DockerError extends PgHaError {
  readonly statusCode: number | undefined;
  constructor(message: string, context: Record<string, unknown> = {}, cause?: unknown, statusCode?: number) {
    super("E_DOCKER", message, { ...context, ...(statusCode === undefined ? {} : { statusCode }) }, cause);
    this.statusCode = statusCode;
  }
}

export function toDockerError(err: unknown, op: string, context: Record<string, unknown> = {}): DockerError {
  if (err instanceof DockerError) return err;
  const e = err as { message?: unknown; statusCode?: unknown; code?: unknown };
  const message = typeof e?.message === "string" ? e.message : String(err);
  const statusCode = typeof e?.statusCode === "number" ? e.statusCode : undefined;
  const code = typeof e?.code === "string" ? { errno: e.code } : {};
  return new DockerError(`docker ${op} failed: ${message}`, { op, ...code, ...context }, err, statusCode);
}
