/**
 * Headless Chromium for tests of pages the stack serves: Debian's `chromium` package
 * (/usr/bin/chromium, or CHROMIUM), driven by playwright-core, which keeps one page open
 * and reads its DOM as the page's own script updates it. The browser gets a fresh profile
 * directory, no background networking, and a host resolver that resolves nothing: it
 * reaches only loopback.
 *
 * playwright-core is a devDependency; it is loaded with require(), which also honours
 * NODE_PATH. A missing browser or package fails the test with what to install.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env["CHROMIUM"] ?? "/usr/bin/chromium";

/** The flags the machine's browser probe used (README of the test tiers), plus no name resolution. */
export const CHROMIUM_ARGS = [
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
  ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
];

/** The few parts of playwright-core's API the tests use. */
export interface Locator {
  count(): Promise<number>;
  first(): Locator;
  textContent(opts?: { timeout?: number }): Promise<string | null>;
  getAttribute(name: string, opts?: { timeout?: number }): Promise<string | null>;
}
export interface Page {
  goto(url: string, opts?: { waitUntil?: "load" | "domcontentloaded" | "networkidle" }): Promise<unknown>;
  screenshot(opts: { path: string; fullPage?: boolean }): Promise<Buffer>;
  locator(selector: string): Locator;
  title(): Promise<string>;
  evaluate<T>(fn: string): Promise<T>;
  waitForTimeout(ms: number): Promise<void>;
  on(event: "pageerror", fn: (err: Error) => void): void;
  on(event: "console", fn: (msg: { type(): string; text(): string }) => void): void;
}
interface BrowserContext {
  newPage(): Promise<Page>;
  close(): Promise<void>;
}
interface Playwright {
  chromium: {
    launchPersistentContext(
      userDataDir: string,
      opts: {
        executablePath: string;
        headless: boolean;
        args: string[];
        viewport: { width: number; height: number };
        timeout: number;
      },
    ): Promise<BrowserContext>;
  };
}

export interface Browser {
  readonly page: Page;
  /** Errors the page threw and console errors it logged. */
  readonly errors: string[];
  close(): Promise<void>;
}

function loadPlaywright(): Playwright {
  try {
    return createRequire(import.meta.url)("playwright-core") as Playwright;
  } catch (err) {
    throw new Error(
      "playwright-core is not installed: it is a devDependency of this project (npm ci installs it); " +
        `or point NODE_PATH at a node_modules that has it (${(err as Error).message.split("\n")[0]})`,
    );
  }
}

/** Starts headless Chromium with one page, `width` × `height`. */
export async function openBrowser(viewport = { width: 1280, height: 900 }): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install Debian's chromium package (./pgha setup does), or set CHROMIUM`,
    );
  }
  const pw = loadPlaywright();
  const profile = mkdtempSync(join(tmpdir(), "pgha-chromium-"));
  try {
    const context = await pw.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport,
      timeout: 60_000,
    });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(`page error: ${err.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    return {
      page,
      errors,
      close: async () => {
        await context.close().catch(() => undefined);
        rmSync(profile, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
}
