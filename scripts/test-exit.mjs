// Preloaded into every test file by scripts/run-tests.mjs. A file run by node:test reports its
// totals only once its event loop is empty; a handle left open would keep it running for ever.
// After every top-level test and suite (with their after() hooks) has ended, this gives the
// file GRACE_MS to exit on its own; then it names the open handles on the TAP stream, lets
// node:test write its totals, and exits with the status node:test set.
import { after } from "node:test";

const GRACE_MS = 15_000;

after(() => {
  setTimeout(() => {
    process.stderr.write(`# open handles after the tests: ${process.getActiveResourcesInfo().join(", ")}\n`);
    process.emit("beforeExit", process.exitCode ?? 0);
    setTimeout(() => process.exit(process.exitCode ?? 0), 5_000).unref();
  }, GRACE_MS).unref();
});
