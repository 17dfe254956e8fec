import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { joinedDecision, NOT_RUNNING_ERROR } from "../../registrator/joined-restart.js";
import { deepFreeze } from "../harness/deep-freeze.js";

const HOLDER = "8112b9985ffd8243407ebb42f37906df1438dfc146eab2043ce84266afe0dbe7";

/** `docker inspect` of the compose stack's router as Docker 20.10 left it after a restore. */
function router(over: { running?: boolean; mode?: string; policy?: string; error?: string } = {}) {
  return deepFreeze({
    Name: "/pgha_router_1",
    State: {
      Status: over.running ? "running" : "exited",
      Running: over.running ?? false,
      ExitCode: 255,
      Error: over.error ?? `${NOT_RUNNING_ERROR}: ${HOLDER}`,
    },
    HostConfig: {
      NetworkMode: over.mode ?? `container:${HOLDER}`,
      RestartPolicy: { Name: over.policy ?? "unless-stopped", MaximumRetryCount: 0 },
    },
  });
}

describe("registrator -restart-joined: which stopped containers Docker left stranded", () => {
  const cases: { name: string; inspect: unknown; want: ReturnType<typeof joinedDecision> }[] = [
    {
      name: "the router, tried before router-ports was up (unless-stopped)",
      inspect: router(),
      want: { start: true, reason: "stranded", networkContainer: HOLDER },
    },
    {
      name: "the same with restart policy always",
      inspect: router({ policy: "always" }),
      want: { start: true, reason: "stranded", networkContainer: HOLDER },
    },
    {
      name: "running already",
      inspect: router({ running: true }),
      want: { start: false, reason: "running" },
    },
    {
      name: "its own network",
      inspect: router({ mode: "pgha_default" }),
      want: { start: false, reason: "own-network" },
    },
    {
      name: "the host's network",
      inspect: router({ mode: "host" }),
      want: { start: false, reason: "own-network" },
    },
    {
      name: "no restart policy",
      inspect: router({ policy: "no" }),
      want: { start: false, reason: "no-restart-policy" },
    },
    {
      name: "on-failure (Docker restarts it itself)",
      inspect: router({ policy: "on-failure" }),
      want: { start: false, reason: "no-restart-policy" },
    },
    {
      name: "stopped by a person (no error)",
      inspect: router({ error: "" }),
      want: { start: false, reason: "other-error" },
    },
    {
      name: "failed to start for another reason",
      inspect: router({ error: "OCI runtime create failed: unable to start container process" }),
      want: { start: false, reason: "other-error" },
    },
    { name: "not an inspect", inspect: "nope", want: { start: false, reason: "not-inspect" } },
    { name: "null", inspect: null, want: { start: false, reason: "not-inspect" } },
    { name: "an empty object", inspect: {}, want: { start: false, reason: "own-network" } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(joinedDecision(c.inspect), c.want);
    });
  }
});
