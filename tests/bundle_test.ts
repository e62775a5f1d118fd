/**
 * `deno bundle` output: one self-contained file per entry, run with `deno run` from a folder
 * that holds nothing else, as a balancer, a backend and a client that work together.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../lib/harness/entry_process.ts";
import { startSystem } from "./_harness.ts";
import { freePort, waitForServers } from "./_system.ts";

async function bundle(entry: string, outDir: string): Promise<string> {
  const out = `${outDir}/${entry}.js`;
  const result = await new Deno.Command(Deno.execPath(), {
    args: ["bundle", "--quiet", "--platform", "deno", "-o", out, `${entry}.ts`],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(result.code, 0, new TextDecoder().decode(result.stderr));
  return out;
}

Deno.test("bundled balancer, backend and client run together from an empty folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lb-bundle-" });
  try {
    await using sys = await startSystem();
    const [balancerJs, backendJs, clientJs] = await Promise.all(
      ["balancer", "backend", "client"].map((entry) => bundle(entry, dir)),
    );
    const port = freePort();
    const balancer = `127.0.0.1:${port}`;
    sys.spawn("balancer", ["--port", String(port)], { script: balancerJs, cwd: dir });
    const backendPort = freePort();
    sys.spawn("backend", ["--port", String(backendPort), "--balancer", balancer], {
      script: backendJs,
      cwd: dir,
    });
    await waitForServers(sys.lbClient(balancer), [`127.0.0.1:${backendPort}`], 20_000, true);
    const client = sys.spawn("client", ["--balancer", balancer, "--requests", "6", "--json"], {
      script: clientJs,
      cwd: dir,
      captureStdout: true,
    });
    assert.equal((await client.status).code, 0, client.log());
    const summary = JSON.parse(client.stdout());
    assert.equal(summary.succeeded, 6);
    assert.deepEqual(summary.perServer, { [`127.0.0.1:${backendPort}`]: 6 });

    // etcd discovery cannot work from a bundle (etcd3 reads its .proto files from its npm
    // folder): it says so in one line instead of crashing.
    const etcdMode = sys.spawn("balancer", [
      "--port",
      String(freePort()),
      "--etcd",
      "http://127.0.0.1:1",
    ], { script: balancerJs, cwd: dir });
    assert.equal((await etcdMode.status).code, 1);
    assert.match(etcdMode.log(), /etcd discovery is not available in a bundle/);

    // Nor can xDS (the Envoy definitions come from @grpc/grpc-js-xds's npm folder).
    const xdsMode = sys.spawn("balancer", [
      "--port",
      String(freePort()),
      "--xds-service",
      "tasks",
    ], { script: balancerJs, cwd: dir });
    assert.equal((await xdsMode.status).code, 1);
    assert.match(xdsMode.log(), /^error: xDS is not available here: .*'--xds-service'$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
