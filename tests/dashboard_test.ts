/**
 * The balancer's dashboard (`lib/balancer/dashboard.ts`) against real balancer and backend processes: in
 * headless Chromium from Debian (`_dashboard_browser.ts`: the servers, their shares, a SIGKILL,
 * a policy change with the token), and over plain HTTP (what `POST /policy` refuses, the bound
 * on `/events`, streams ended at shutdown).
 */
import assert from "node:assert/strict";
import { MAX_DASHBOARD_SUBSCRIBERS } from "../lib/balancer/dashboard.ts";
import { PROJECT_ROOT } from "../lib/harness/entry_process.ts";
import { POLICY_NAMES } from "../policies/mod.ts";
import { dashboardSystem } from "./_dashboard.ts";
import { startSystem } from "./_harness.ts";
import { testSecrets } from "./_secrets.ts";
import { listServers } from "./_system.ts";

const TOKEN = "dashboard-test-token";
/** The browser scenario's own deadline: it waits 20 s at most per step. */
const BROWSER_TIMEOUT_MS = 180_000;

Deno.test("dashboard in Chromium: servers and shares appear, follow a SIGKILL, and the policy changes from the page with the token", async () => {
  // playwright-core needs -A as it loads, so the browser side runs as a process of its own.
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", "tests/_dashboard_browser.ts"],
    cwd: PROJECT_ROOT,
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(BROWSER_TIMEOUT_MS),
  }).output();
  const out = new TextDecoder().decode(stdout).trim();
  if (out !== "") console.log(out);
  assert.equal(code, 0, `the browser scenario failed:\n${new TextDecoder().decode(stderr)}`);
});

Deno.test("dashboard over HTTP: POST /policy refuses a missing token, a bad name or a bad body; /events is bounded and ends at shutdown", async () => {
  await using secrets = await testSecrets();
  const tokenFile = await secrets.write("token", TOKEN);
  await using sys = await startSystem();
  const system = await dashboardSystem(sys, {
    balancerArgs: ["--policy", "round_robin"],
    backends: 1,
    token: { file: tokenFile, value: TOKEN },
  });
  const streams: ReadableStreamDefaultReader<Uint8Array>[] = [];
  sys.defer(() => Promise.all(streams.map((reader) => reader.cancel().catch(() => {}))));
  const post = async (body: string, headers: Record<string, string>) => {
    const response = await fetch(`${system.base}/policy`, {
      method: "POST",
      body,
      headers,
      signal: AbortSignal.timeout(5_000),
    });
    return { status: response.status, text: await response.text() };
  };
  const json = { "content-type": "application/json" };
  const auth = { ...json, authorization: `Bearer ${TOKEN}` };
  const leastLoad = JSON.stringify({ policy: "least_load" });

  const missing = await post(leastLoad, json);
  assert.equal(missing.status, 401);
  assert.match(missing.text, /needs the control-plane token/);
  assert.equal((await post(leastLoad, { ...json, authorization: "Bearer x" })).status, 401);
  const badName = await post(JSON.stringify({ policy: "fastest" }), auth);
  assert.equal(badName.status, 400);
  assert.match(badName.text, new RegExp(`one of ${POLICY_NAMES.join(", ")}: got 'fastest'`));
  assert.equal(
    (await post("policy=least_load", { ...auth, "content-type": "text/plain" })).status,
    415,
  );
  assert.equal((await post("{", auth)).status, 400);
  assert.equal((await post(JSON.stringify({ policy: "x".repeat(2_000) }), auth)).status, 413);
  assert.equal((await listServers(system.lb)).policy, "round_robin", "nothing changed");
  assert.deepEqual(await post(leastLoad, auth), {
    status: 200,
    text: JSON.stringify({ previous: "round_robin", policy: "least_load" }),
  });
  assert.equal((await listServers(system.lb)).policy, "least_load");

  const uplot = await fetch(`${system.base}/uplot.js`);
  assert.match(uplot.headers.get("content-type") ?? "", /javascript/);
  assert.match(await uplot.text(), /uPlot/);

  for (let i = 0; i < MAX_DASHBOARD_SUBSCRIBERS; i++) {
    const response = await fetch(`${system.base}/events`);
    assert.equal(response.status, 200);
    streams.push(response.body!.getReader());
  }
  const first = new TextDecoder().decode((await streams[0].read()).value);
  assert.match(first, /^retry: 2000\ndata: \{.*"policy":"least_load"/);
  const refused = await fetch(`${system.base}/events`);
  assert.equal(refused.status, 503);
  assert.match(await refused.text(), /Too many dashboard viewers/);

  // A graceful stop ends every open stream rather than waiting on them.
  const status = await system.balancer.process.stop(10_000);
  assert.equal(status.code, 0, system.balancer.process.log());
  for (const reader of streams) {
    while (!(await reader.read()).done) { /* drain what was sent before the end */ }
  }
});
