/**
 * Runs pgBackRest (as the postgres user when we are root) and turns what it
 * says into typed results: the info snapshot, and one-line error summaries that
 * name the cause (an HTTP status and S3's error code, a refused connection, a
 * certificate) without any credential. Its results go to the backup loop
 * (manager.ts) and the commands (cli.ts).
 */
import { spawn } from "node:child_process";
import { PgHaError } from "../../shared/errors.js";
import { type BackupInfo, parseBackupInfo } from "./info.js";

export class BackupError extends PgHaError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super("E_UPSTREAM", message, context);
  }
}

/** pgBackRest's exit code when another command holds the stanza's lock (LockAcquireError). */
export const LOCK_ACQUIRE_EXIT = 50;

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * One line out of pgBackRest's error output (or a spool `.error` file, which
 * holds the code on its first line and the message after it).
 */
export function summarizeError(text: string): string {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "");
  let head = lines.find((l) => /ERROR: \[\d+\]/.test(l))?.replace(/^.*?ERROR: /, "");
  if (head === undefined && lines.length > 0 && /^\d+$/.test(lines[0]!)) {
    head = `[${lines[0]}]: ${lines[1] ?? ""}`;
  }
  head ??= lines[0] ?? "no output";
  const parts = [head.replace(/:$/, "")];
  const cause = lines.find((l) => /\[[A-Za-z]+Error\]/.test(l) && !head!.includes(l));
  if (cause) parts.push(cause.replace(/^repo\d+: /, "").replace(/:$/, ""));
  const http = /HTTP request failed with (\d+) \(([^)]*)\)/.exec(text);
  if (http && !parts.some((p) => p.includes(`failed with ${http[1]}`)))
    parts.push(`HTTP ${http[1]} ${http[2]}`);
  const s3Code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
  const s3Message = /<Message>([^<]+)<\/Message>/.exec(text)?.[1];
  if (s3Code) parts.push(s3Message ? `${s3Code}: ${s3Message}` : s3Code);
  const hint = hintFor(text);
  const line = parts.join("; ").replace(/\s+/g, " ");
  const short = line.length > 400 ? `${line.slice(0, 397)}...` : line;
  return hint ? `${short} (${hint})` : short;
}

/** What an operator should look at, from the symptom. */
export function hintFor(text: string): string | undefined {
  if (/certificate|verify/i.test(text)) {
    return "check the endpoint's certificate, BACKUP_S3_CA_FILE and BACKUP_S3_VERIFY_TLS";
  }
  if (/failed with 403|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch/.test(text)) {
    return "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions";
  }
  if (/NoSuchBucket|failed with 404/.test(text)) return "check the bucket name and the endpoint";
  if (
    /HostConnectError|unable to connect|Connection refused|unable to get address|timeout|timed out/i.test(
      text,
    )
  ) {
    return "check the endpoint and the network; WAL waits in pg_wal meanwhile";
  }
  if (/do not match the database|system-id/i.test(text)) {
    return "the repository holds another cluster under this stanza: set BACKUP_STANZA or BACKUP_REPO_PATH";
  }
  return undefined;
}

export interface PgBackRestOptions {
  readonly stanza: string;
  /** Run as postgres through setpriv (when the caller is root). */
  readonly asPostgres: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

export class PgBackRest {
  constructor(private readonly o: PgBackRestOptions) {}

  get stanza(): string {
    return this.o.stanza;
  }

  /** The command line, through setpriv when we are root. */
  commandLine(args: readonly string[]): [string, string[]] {
    const full = [`--stanza=${this.o.stanza}`, ...args];
    return this.o.asPostgres
      ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", "pgbackrest", ...full]]
      : ["pgbackrest", full];
  }

  run(args: readonly string[], opts: { timeoutMs?: number; inherit?: boolean } = {}): Promise<RunResult> {
    const [cmd, argv] = this.commandLine(args);
    const t0 = Date.now();
    return new Promise((resolve) => {
      const child = spawn(cmd, argv, {
        env: this.o.env ?? { PATH: process.env["PATH"], HOME: "/var/lib/postgresql", LANG: "C.UTF-8" },
        cwd: "/",
        stdio: opts.inherit ? ["ignore", "inherit", "inherit"] : ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (c: Buffer) => {
        if (stdout.length < 4_000_000) stdout += c.toString();
      });
      child.stderr?.on("data", (c: Buffer) => {
        if (stderr.length < 1_000_000) stderr += c.toString();
      });
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => child.kill("SIGTERM"), opts.timeoutMs).unref();
      child.once("error", (err) => {
        clearTimeout(timer);
        resolve({ code: 127, stdout, stderr: stderr + err.message, ms: Date.now() - t0 });
      });
      child.once("close", (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr, ms: Date.now() - t0 });
      });
    });
  }

  /** The stanza's backups; a repository that does not answer gives a non-zero code with the reason. */
  async info(timeoutMs = 120_000): Promise<BackupInfo> {
    const r = await this.run(["--output=json", "info"], { timeoutMs });
    if (r.code !== 0) {
      return Object.freeze({
        code: 99,
        message: summarizeError(r.stdout + "\n" + r.stderr),
        backups: Object.freeze([]),
        archiveMin: undefined,
        archiveMax: undefined,
      });
    }
    const info = parseBackupInfo(r.stdout, this.o.stanza);
    return info.code === 99 ? { ...info, message: summarizeError(info.message) } : info;
  }

  /** Runs a command that must succeed; throws a BackupError with the summary otherwise. */
  async must(args: readonly string[], timeoutMs?: number): Promise<RunResult> {
    const r = await this.run(args, timeoutMs === undefined ? {} : { timeoutMs });
    if (r.code !== 0) {
      throw new BackupError(summarizeError(r.stdout + "\n" + r.stderr), {
        command: args.at(-1),
        exitCode: r.code,
      });
    }
    return r;
  }
}
