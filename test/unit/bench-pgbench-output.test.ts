import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePgbench, threadsFor } from "../../bench/pgbench.js";

const PGBENCH_15 = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 1
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 61234
number of failed transactions: 0 (0.000%)
latency average = 0.258 ms
initial connection time = 20.512 ms
tps = 31028.123456 (without initial connection time)
`;

describe("pgbench output", () => {
  it("reads tps, average latency, transactions and failures from pgbench 15's summary", () => {
    assert.deepEqual(parsePgbench(PGBENCH_15), {
      tps: 31028.123456,
      latencyMs: 0.258,
      transactions: 61234,
      failed: 0,
      connectMs: 20.512,
    });
  });

  it("refuses output without the figures a round needs, quoting its end", () => {
    assert.throws(() => parsePgbench("pgbench: error: connection refused\n"), /connection refused/);
  });

  it("threads: one per client up to the cores, and a divisor of the clients", () => {
    const cases: [number, number, number][] = [
      [1, 2, 1],
      [8, 2, 2],
      [64, 2, 2],
      [9, 2, 1],
      [9, 4, 3],
    ];
    for (const [clients, cores, want] of cases)
      assert.equal(threadsFor(clients, cores), want, `${clients}/${cores}`);
  });
});
