/**
 * The dashboard screenshot of docs/operations.md, taken during a real benchmark: `deno task bench`'s
 * heterogeneous scenario (three backends, the third 4 times slower, CPU-heavy tasks from 6
 * loops) under weighted_round_robin, with the bench's `--http-port` serving its balancer's
 * dashboard. The page is captured after 30 s of load, then the bench is stopped (Ctrl-C).
 *
 *     npx --yes deno@2.9.6 run -A tests/dashboard_screenshot.ts [docs/dashboard.png]
 *
 * `-A`: playwright-core needs it as it loads (see `_dashboard_page.ts`). Takes about a minute.
 *
 * @module
 */
import { spawnEntry } from "../lib/harness/entry_process.ts";
import { freePort } from "../lib/harness/ports.ts";
import { waitFor } from "../lib/harness/wait.ts";
import { launchChromium, waitForRows } from "./_dashboard_page.ts";

/** Seconds of load before the capture. */
const LOAD_BEFORE_CAPTURE_S = 30;

async function main(out: string): Promise<void> {
  const httpPort = freePort();
  const bench = spawnEntry("bench", [
    "--scenarios",
    "heterogeneous",
    "--policies",
    "weighted_round_robin",
    "--modes",
    "lookaside",
    "--rounds",
    "1",
    "--duration",
    String(LOAD_BEFORE_CAPTURE_S + 30),
    "--http-port",
    String(httpPort),
    "--out",
    "bench-results/dashboard-screenshot",
  ], { name: "bench" });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 640 } });
    const url = `http://127.0.0.1:${httpPort}/`;
    await waitFor(
      `the bench's dashboard at ${url}`,
      async () => {
        if (bench.exited) throw new Error(`the bench exited:\n${bench.log()}`);
        await page.goto(url, { timeout: 2_000 });
        return true;
      },
      60_000,
      500,
    );
    await waitForRows(page, "three healthy servers", (rows) => {
      const health = Object.values(rows).map((row) => row.health);
      return health.length === 3 && health.every((h) => h === "healthy");
    }, 60_000);
    await new Promise((resolve) => setTimeout(resolve, LOAD_BEFORE_CAPTURE_S * 1_000));
    await page.screenshot({ path: out, fullPage: true });
    console.log(`dashboard screenshot: ${out}`);
  } finally {
    await browser.close();
    bench.signal("SIGINT"); // the bench tears its processes down on Ctrl-C
    await bench.status;
  }
}

if (import.meta.main) await main(Deno.args[0] ?? "docs/dashboard.png");
