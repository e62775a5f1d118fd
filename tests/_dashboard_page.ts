/**
 * The dashboard page in Debian's Chromium, driven by playwright-core (never a browser download;
 * `tests/ensure_tools.sh` installs it): launching the browser and reading the servers' table.
 *
 * playwright-core reads the home directory, the OS release and `/proc/sys/fs/binfmt_misc` (its
 * WSL check) as it loads, which Deno grants only with `--allow-all`: scripts importing this run
 * as their own process with `-A` (the test spawns them; the test task has `--allow-run`).
 *
 * @module
 */
import { type Browser, chromium, type Page } from "playwright-core";
import { waitFor } from "../lib/harness/wait.ts";

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * Starts headless Chromium. `--no-sandbox`: the sandbox needs user namespaces, which containers
 * and root often lack, and the browser loads only the balancer's own page.
 */
export async function launchChromium(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM_PATH);
  } catch {
    throw new Error(`${CHROMIUM_PATH} is missing: run 'sh tests/ensure_tools.sh'`);
  }
  return await chromium.launch({
    executablePath: CHROMIUM_PATH,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    timeout: 30_000,
  });
}

/** One row of the servers' table. */
export interface PageRow {
  /** `healthy`, `unhealthy` or `gone`. */
  health: string;
  /** Share of the last interval's picks, in %; `null` when there were none. */
  share: number | null;
}

/** The servers' table of the page, by address. */
export function pageRows(page: Page): Promise<Record<string, PageRow>> {
  return page.$$eval("#servers tbody tr", (trs) =>
    Object.fromEntries(
      trs.map((tr) => {
        const share = tr.getAttribute("data-share");
        return [tr.getAttribute("data-address"), {
          health: tr.getAttribute("data-health"),
          share: share ? Number(share) : null,
        }];
      }),
    ));
}

/** Waits (up to `timeoutMs`) until `check` holds for the table; fails with what it last saw. */
export async function waitForRows(
  page: Page,
  what: string,
  check: (rows: Record<string, PageRow>) => boolean,
  timeoutMs = 20_000,
): Promise<void> {
  await waitFor(
    what,
    async () => {
      const seen = await pageRows(page);
      if (!check(seen)) throw new Error(`the page shows ${JSON.stringify(seen)}`);
      return true;
    },
    timeoutMs,
    200,
  );
}
