/**
 * The dashboard in a real browser, run by `tests/dashboard_test.ts` as a process of its own
 * (playwright-core needs `-A`, see `_dashboard_page.ts`): a balancer with a token, three
 * backends and a lookaside load; the page must show every server with a share of the picks,
 * show a SIGKILLed backend out of the picks and the shares moving to the others, refuse a policy
 * change with a wrong token and make it with the right one. Saves a screenshot and prints its
 * path. Exits non-zero with the failed check.
 *
 * Alone: `npx --yes deno@2.9.6 run -A tests/_dashboard_browser.ts`
 *
 * @module
 */
import assert from "node:assert/strict";
import { dashboardSystem, pacedLoad } from "./_dashboard.ts";
import { launchChromium, waitForRows } from "./_dashboard_page.ts";
import { startSystem } from "./_harness.ts";
import { startXdsClient } from "./_xds.ts";
import { testSecrets } from "./_secrets.ts";
import { listServers } from "./_system.ts";

const TOKEN = "dashboard-browser-token";
/** Deadline of each wait on the page. */
const PAGE_WAIT_MS = 20_000;

async function main(): Promise<void> {
  await using secrets = await testSecrets();
  const token = { file: await secrets.write("token", TOKEN), value: TOKEN };
  await using sys = await startSystem();
  const system = await dashboardSystem(sys, {
    balancerArgs: ["--policy", "round_robin", "--xds-service", "tasks"],
    backends: 3,
    token,
  });
  const client = sys.taskClient({ balancer: system.balancer.address, clientId: "dashboard" });
  const load = pacedLoad(sys, client, "SIMPLE", 3, 10);
  const browser = await launchChromium();
  sys.defer(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(system.base, { timeout: PAGE_WAIT_MS });
  const addresses = system.backends.map((b) => b.address);
  await waitForRows(
    page,
    "three healthy servers with a share of the picks",
    (rows) =>
      Object.keys(rows).length === 3 &&
      addresses.every((a) => rows[a]?.health === "healthy" && (rows[a].share ?? 0) > 0),
  );
  assert.equal(await page.textContent("#policy"), "round_robin");
  assert.equal(await page.locator("#chart canvas").count(), 1, "the chart is drawn");
  assert.equal(await page.textContent("#connection"), "live");
  // It serves xDS: the summary counts a stock xDS client once it connects.
  assert.equal(await page.isVisible("#xds-summary"), true);
  const xdsClient = startXdsClient("grpc-js", system.balancer.address, "tasks", {
    concurrency: 1,
  });
  try {
    await page.locator("#xds:text-is('1 · 0 NACKs')").waitFor({ timeout: PAGE_WAIT_MS });
  } finally {
    await xdsClient.stop();
  }

  const [killed, ...kept] = system.backends;
  killed.process.signal("SIGKILL");
  await waitForRows(
    page,
    `${killed.address} out of the picks and the two others sharing them`,
    (rows) =>
      ["unhealthy", "gone"].includes(rows[killed.address]?.health) &&
      !rows[killed.address].share &&
      kept.every((b) => rows[b.address]?.health === "healthy" && rows[b.address].share! > 40),
  );

  await page.selectOption("#policy-select", "least_load");
  await page.fill("#token", "not-the-token");
  await page.click("#policy-form button");
  await page.locator("#policy-message.error").waitFor({ timeout: PAGE_WAIT_MS });
  assert.match(await page.textContent("#policy-message") ?? "", /401.*token is wrong/);
  assert.equal(
    (await listServers(system.lb)).policy,
    "round_robin",
    "a wrong token changes nothing",
  );

  await page.fill("#token", TOKEN);
  await page.click("#policy-form button");
  await page.locator("#policy:text-is('least_load')").waitFor({ timeout: PAGE_WAIT_MS });
  assert.equal(
    await page.textContent("#policy-message"),
    "Changed from round_robin to least_load",
  );
  assert.equal((await listServers(system.lb)).policy, "least_load");

  const dir = await Deno.makeTempDir({ prefix: "dashboard_test_" });
  await page.screenshot({ path: `${dir}/dashboard.png`, fullPage: true });
  console.log(`dashboard screenshot: ${dir}/dashboard.png`);
  assert.ok(load.done.ok > 0, "the load ran");
}

if (import.meta.main) await main();
