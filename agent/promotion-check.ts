/**
 * The answer to Patroni's pre_promote hook. Patroni runs `pgha-pre-promote`
 * (agent/bin) after it has taken the leader lock and before it promotes
 * PostgreSQL; the script asks this server, on a unix socket only root and
 * postgres can open, and exits non-zero when the answer is no. Patroni then
 * releases the lock and does not promote.
 *
 * No fence (the common case) costs one etcd read. With a fence, this node's
 * WAL position comes from its own Patroni REST API and `/status` from etcd;
 * agent/fence.ts decides. Anything unknown refuses: fail closed.
 */
import { chmodSync, chownSync, mkdirSync, rmSync } from "node:fs";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { dirname } from "node:path";
import { Counter, type Registry } from "prom-client";
import type { Logger } from "../shared/logger.js";
import { http } from "../shared/node-http.js";
import { type PromotionVerdict, promotionVerdict } from "./fence.js";
import type { FenceStore } from "./fence-store.js";
import type { DrainResult } from "./startup-drain.js";

export const PRE_PROMOTE_PATH = "/pre-promote";
/** Patroni's before_stop hook (agent/bin/pgha-before-stop): answered once start-ups have drained. */
export const BEFORE_STOP_PATH = "/before-stop";

export interface PromotionCheckDeps {
  readonly self: string;
  readonly fence: Pick<FenceStore, "read" | "statusOptime">;
  /** This node's WAL position from its Patroni; null when unknown. */
  readonly walPosition: () => Promise<number | null>;
  readonly log: Logger;
}

/** One decision, all I/O included; never throws. */
export async function checkPromotion(d: PromotionCheckDeps): Promise<PromotionVerdict> {
  // All three at once: this runs between Patroni taking the lock and promoting, so its time is
  // the switchover's. Without a fence the answer does not wait for the other two.
  const statusOptime = d.fence.statusOptime().catch((err: unknown) => {
    d.log.warn({ err }, "etcd did not answer for /status");
    return null;
  });
  const ownLsn = d.walPosition();
  let record: Awaited<ReturnType<PromotionCheckDeps["fence"]["read"]>>;
  try {
    record = await d.fence.read();
  } catch (err) {
    return { allow: false, reason: `etcd did not answer for the stop fence: ${(err as Error).message}` };
  }
  if (record.read.kind === "none") {
    return promotionVerdict({ self: d.self, fence: record.read, statusOptime: null, ownLsn: null });
  }
  return promotionVerdict({
    self: d.self,
    fence: record.read,
    statusOptime: await statusOptime,
    ownLsn: await ownLsn,
  });
}

export class PromotionCheckServer {
  private server: Server | null = null;
  private readonly checks: Counter<"verdict">;
  private readonly drains: Counter<"outcome">;

  constructor(
    private readonly d: PromotionCheckDeps & {
      readonly socketPath: string;
      /** The group allowed to connect (postgres); null outside the image. */
      readonly gid: number | null;
      readonly registry: Registry;
      /** What the before_stop hook waits for; without it the hook is answered at once. */
      readonly beforeStop?: () => Promise<DrainResult>;
    },
  ) {
    this.checks = new Counter({
      name: "pgha_promotion_checks_total",
      help: "Answers to Patroni's pre_promote hook: allowed, or refused by the stop fence",
      labelNames: ["verdict"],
      registers: [d.registry],
    });
    this.drains = new Counter({
      name: "pgha_before_stop_total",
      help: "Patroni's before_stop hook on a planned stop: every client in start-up finished it (drained) or the bound ran out (timed_out); any other stop is not held up (unplanned)",
      labelNames: ["outcome"],
      registers: [d.registry],
    });
  }

  async start(): Promise<void> {
    const path = this.d.socketPath;
    const dir = dirname(path);
    mkdirSync(dir, { recursive: true, mode: 0o750 });
    if (this.d.gid !== null) chownSync(dir, 0, this.d.gid);
    chmodSync(dir, 0o750);
    rmSync(path, { force: true });
    const server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    if (this.d.gid !== null) chownSync(path, 0, this.d.gid);
    chmodSync(path, 0o660);
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.url === BEFORE_STOP_PATH) {
      await this.beforeStop(res);
      return;
    }
    if (req.url !== PRE_PROMOTE_PATH) {
      res
        .writeHead(404, { "content-type": "text/plain" })
        .end(`not found; ask ${PRE_PROMOTE_PATH} or ${BEFORE_STOP_PATH}\n`);
      return;
    }
    const t0 = performance.now();
    const verdict = await checkPromotion(this.d);
    const ms = Math.round((performance.now() - t0) * 10) / 10;
    this.checks.inc({ verdict: verdict.allow ? "allowed" : "refused" });
    if (verdict.allow) this.d.log.info({ reason: verdict.reason, ms }, "promotion allowed");
    else this.d.log.warn({ reason: verdict.reason, ms }, "promotion refused by the stop fence");
    res
      .writeHead(verdict.allow ? 200 : 409, { "content-type": "text/plain" })
      .end(`${verdict.allow ? "allowed" : "refused"}: ${verdict.reason}\n`);
  }

  private async beforeStop(res: ServerResponse): Promise<void> {
    const drain = this.d.beforeStop;
    if (!drain) {
      res.writeHead(200, { "content-type": "text/plain" }).end("nothing to wait for\n");
      return;
    }
    try {
      const r = await drain();
      const outcome = !r.planned ? "unplanned" : r.left === 0 ? "drained" : "timed_out";
      this.drains.inc({ outcome });
      const fields = { noticeMs: r.noticeMs, inStartUp: r.inStartUp, left: r.left, ms: r.ms };
      if (!r.planned)
        this.d.log.info(
          fields,
          "before PostgreSQL stops: no switchover announced and no stop requested; not waiting",
        );
      else if (r.left === 0)
        this.d.log.info(fields, "before PostgreSQL stops: no client is left in its start-up");
      else
        this.d.log.warn(
          fields,
          "before PostgreSQL stops: clients still in their start-up when the wait ran out; their connections fail",
        );
      res.writeHead(200, { "content-type": "text/plain" }).end(`${outcome} in ${r.ms} ms\n`);
    } catch (err) {
      this.d.log.error({ err }, "before_stop hook failed; PostgreSQL stops now");
      res.writeHead(500, { "content-type": "text/plain" }).end(`failed: ${(err as Error).message}\n`);
    }
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    await new Promise<void>((r) => s.close(() => r()));
    rmSync(this.d.socketPath, { force: true });
  }
}
