/**
 * deno.json and the code that starts entries must agree on permissions and pins, and the
 * shipped task command lines themselves must run a deployment's configuration.
 */
import assert from "node:assert/strict";
import { ENTRY_PERMISSIONS, PROJECT_ROOT } from "../lib/harness/entry_process.ts";
import { freePort } from "../lib/harness/ports.ts";
import { createLoadBalancerClient, unary } from "../lib/wire/proto.ts";
import { waitFor } from "../lib/harness/wait.ts";

const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));

for (const [entry, flags] of Object.entries(ENTRY_PERMISSIONS)) {
  Deno.test(`deno.json task '${entry}' runs ${entry}.ts with the permissions spawnEntry uses`, () => {
    assert.equal(config.tasks[entry], `deno run ${flags.join(" ")} ${entry}.ts`);
  });
}

Deno.test("deno.json pins every npm dependency to an exact version", () => {
  for (const [name, specifier] of Object.entries(config.imports as Record<string, string>)) {
    assert.match(specifier, /^npm:(@[^/]+\/)?[^@]+@\d+\.\d+\.\d+$/, name);
  }
});

Deno.test("no task runs with -A or --allow-all", () => {
  for (const [name, command] of Object.entries(config.tasks as Record<string, string>)) {
    assert.doesNotMatch(command, /(^|\s)(-A|--allow-all)(\s|$)/, name);
  }
});

/** Runs `deno task <task> <args>` itself, as a user types it, in the project root. */
function runTask(task: string, args: string[], stdout: "piped" | "null" = "null") {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", task, ...args],
    cwd: PROJECT_ROOT,
    stdin: "null",
    stdout,
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const stderr = new Response(child.stderr).text();
  return {
    child,
    stderr,
    /** SIGTERM (deno task passes it on), then the exit. */
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // It has exited.
      }
      await child.status;
      if (stdout === "piped") await child.stdout.cancel().catch(() => {});
    },
  };
}

Deno.test("the shipped tasks listen on every interface and reach a backend registered by name, as the original's are", async () => {
  const lbPort = freePort();
  const backendPort = freePort();
  const balancer = runTask("balancer", ["--host", "0.0.0.0", "--port", String(lbPort)]);
  // An original backend registers as localhost:PORT; ours does with --advertise localhost.
  const backend = runTask("backend", [
    ...["--host", "0.0.0.0", "--advertise", "localhost", "--port", String(backendPort)],
    ...["--balancer", `localhost:${lbPort}`],
  ]);
  const lb = createLoadBalancerClient(`127.0.0.1:${lbPort}`);
  try {
    const name = `localhost:${backendPort}`;
    await waitFor(
      "the balancer to check the backend by name and admit it",
      async () => {
        const list = await unary(lb.ListServers, lb, {}, { deadline: Date.now() + 1_000 });
        return list.servers.some((s) => s.server_address === name && s.healthy);
      },
      30_000,
      100,
    );
    const client = runTask("client", [
      ...["--balancer", `localhost:${lbPort}`, "--requests", "5", "--json"],
    ], "piped");
    const [status, out] = await Promise.all([
      client.child.status,
      new Response(client.child.stdout).text(),
    ]);
    assert.ok(status.success, await client.stderr);
    const summary = JSON.parse(out.trim().split("\n").at(-1)!);
    assert.equal(summary.succeeded, 5, out);
    assert.deepEqual(Object.keys(summary.perServer), [name]);
  } finally {
    lb.close();
    await backend.stop();
    await balancer.stop();
  }
});
