/**
 * The README's dashboard screenshot, during a benchmark-like run: a balancer under
 * weighted_round_robin, three backends of different speeds (slowdown 1, 2 and 4) under a
 * CPU_HEAVY load from 6 loops; a fourth backend joins after 20 s and the slowdown-2 one leaves
 * (SIGTERM, a drain) 20 s later; the page is captured 15 s after that.
 *
 *     npx --yes deno@2.9.3 run -A tests/dashboard_screenshot.ts [docs/dashboard.png]
 *
 * `-A`: playwright-core needs it as it loads (see `_dashboard_page.ts`). Takes about a minute.
 *
 * @module
 */
import { TaskClient } from "../lib/task_client.ts";
import { startDashboardSystem, startLoad } from "./_dashboard.ts";
import { launchChromium, waitForRows } from "./_dashboard_page.ts";
import { startBackend, type Started, stopAll } from "./_system.ts";

/** Each backend's flags: heavy work of a realistic size, and its speed. */
const backendArgs = (slowdown: number) => ["--work-units", "5", "--slowdown", String(slowdown)];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(out: string): Promise<void> {
  const system = await startDashboardSystem({
    balancerArgs: ["--policy", "weighted_round_robin"],
    backendArgs: [backendArgs(1), backendArgs(2), backendArgs(4)],
  });
  const client = new TaskClient({
    balancer: system.balancer.address,
    clientId: "screenshot",
    clientIds: 1_000,
  });
  const load = startLoad(client, "CPU_HEAVY", 6);
  const browser = await launchChromium();
  let joined: Started | undefined;
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 640 } });
    await page.goto(system.base, { timeout: 20_000 });
    await waitForRows(page, "the three servers", (rows) => Object.keys(rows).length === 3);
    await sleep(20_000);
    const fourth = joined = startBackend([
      "--balancer",
      system.balancer.address,
      ...backendArgs(1),
    ]);
    await waitForRows(
      page,
      "the fourth server",
      (rows) => rows[fourth.address]?.health === "healthy",
    );
    await sleep(20_000);
    const leaving = system.backends[1];
    await leaving.process.stop(5_000);
    await sleep(15_000);
    await page.screenshot({ path: out, fullPage: true });
    console.log(`dashboard screenshot: ${out} (${load.done.ok} tasks, ${load.done.failed} failed)`);
  } finally {
    await load.stop();
    client.close();
    system.lb.close();
    await browser.close();
    await stopAll(system.balancer, ...system.backends, joined);
  }
}

if (import.meta.main) await main(Deno.args[0] ?? "docs/dashboard.png");
