/**
 * `deno task bench --quick` completes and writes its files. It asserts what was run and written,
 * never a timing: performance lives in the benchmark's own report.
 */
import assert from "node:assert/strict";
import { PROJECT_ROOT, spawnEntry } from "../lib/harness/entry_process.ts";
import {
  QUICK_SCENARIOS,
  type ScenarioName,
  scenarioPolicies,
  SCENARIOS,
} from "../lib/bench/bench_scenarios.ts";
import { freePort } from "../lib/harness/ports.ts";
import { POLICY_NAMES } from "../policies/mod.ts";

Deno.test("bench --quick runs its scenarios for every policy and baseline and writes its report", async () => {
  const out = `bench-results/test-${Deno.pid}`;
  const dir = new URL(out, PROJECT_ROOT);
  try {
    const bench = spawnEntry("bench", ["--quick", "--out", out], { captureStdout: true });
    const status = await bench.status;
    assert.equal(status.code, 0, bench.log());
    const results = JSON.parse(
      await Deno.readTextFile(new URL(`${out}/results.json`, PROJECT_ROOT)),
    );

    // --quick: every policy in lookaside mode, and in watch mode in the simple scenario; a sweep
    // runs every policy at its quick load in its own mode.
    // Where each target starts fresh servers, only a few policies run.
    const policiesOf = (s: ScenarioName) => scenarioPolicies(SCENARIOS[s], POLICY_NAMES, true);
    const expected = QUICK_SCENARIOS.flatMap((s) =>
      SCENARIOS[s].sweep
        ? policiesOf(s).map((t) =>
          `${s}/${t}${SCENARIOS[s].sweep!.mode === "watch" ? " (watch)" : ""}/tasks`
        )
        : [
          ...policiesOf(s).map((t) => `${s}/${t}/tasks`),
          ...(s === "simple" ? policiesOf(s).map((t) => `${s}/${t} (watch)/tasks`) : []),
          `${s}/direct/tasks`,
          ...(SCENARIOS[s].lookups
            ? [...POLICY_NAMES, "echo"].map((t) => `${s}/${t}/lookups`)
            : []),
        ]
    );
    assert.deepEqual(
      results.runs.map((r: { scenario: string; target: string; kind: string }) =>
        `${r.scenario}/${r.target}/${r.kind}`
      ),
      expected,
    );
    for (const run of results.runs) {
      assert.ok(run.completed > 0, `${run.scenario}/${run.target} completed nothing`);
      for (const key of ["p50", "p90", "p99", "max"]) assert.ok(run.latencyMs[key] > 0);
      if (run.kind === "tasks") {
        const served = run.servers.reduce(
          (n: number, s: { requests: number }) => n + s.requests,
          0,
        );
        assert.equal(served, run.completed, `${run.scenario}/${run.target} per-server counts`);
      }
    }
    const sweeps = results.runs.filter((r: { sweep?: unknown }) => r.sweep);
    assert.equal(
      sweeps.length,
      QUICK_SCENARIOS.filter((s) => SCENARIOS[s].sweep).reduce(
        (n, s) => n + policiesOf(s).length,
        0,
      ),
    );
    // Every policy ran somewhere, and the fresh scenarios ran fewer.
    assert.deepEqual(
      [...new Set(results.runs.map((r: { policy: string }) => r.policy))].sort(),
      [...POLICY_NAMES, "direct", "echo"].sort(),
    );
    assert.ok(policiesOf("churn").length < POLICY_NAMES.length);
    for (const run of sweeps) {
      const { sweep } = run;
      assert.equal(sweep.offeredLoad, SCENARIOS[run.scenario as ScenarioName].sweep!.quickLoads[0]);
      assert.ok(sweep.rate > 0);
      assert.equal(sweep.sloMs, 100);
      assert.ok(sweep.sim.p99Ms > 0 && sweep.oracle.p99Ms > 0, `${run.scenario}/${run.target}`);
      // The oracle is the bound: no policy's simulated p99 beats it at the same point.
      assert.ok(sweep.oracle.p99Ms <= sweep.sim.p99Ms, `${run.scenario}/${run.target} vs oracle`);
      assert.ok(sweep.oracleCapacityAtSlo >= sweep.simCapacityAtSlo);
      assert.equal(sweep.sim.shares.length, run.servers.length);
      assert.ok(Array.isArray(sweep.overloaded));
    }
    // The noisy neighbour's first backend dropped to 0.3 and came back, in each run.
    for (
      const run of sweeps.filter((r: { scenario: string }) => r.scenario === "noisy_neighbour")
    ) {
      assert.deepEqual(
        run.sweep.capacityChanges.map((c: { capacity: number }) => c.capacity),
        [0.3, 1],
      );
    }
    const churn = results.runs.filter((r: { scenario: string }) => r.scenario === "churn");
    for (const run of churn) {
      assert.deepEqual(run.events.map((e: { what: string }) => e.what.split(" ")[1]), [
        "killed",
        "started",
      ]);
    }
    const joins = results.runs.filter((r: { scenario: string }) => r.scenario === "slow_start");
    for (const run of joins) {
      assert.deepEqual(run.events.map((e: { what: string }) => e.what.split(" ")[1]), ["started"]);
      assert.equal(run.servers.length, 4);
    }
    assert.equal(results.machine.cpus, navigator.hardwareConcurrency);
    assert.match(results.versions.deno, /^\d+\.\d+\.\d+/);

    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    const charts = [
      ...QUICK_SCENARIOS.flatMap((s) =>
        (SCENARIOS[s].sweep
          ? ["p99-load", "capacity-at-slo"]
          : ["servers", "latency", "throughput"])
          .map((c) => `${s}-${c}.svg`)
      ),
      "slow_start-ramp.svg",
      "noisy_neighbour-share-over-time.svg",
    ];
    assert.deepEqual(
      files,
      [...charts, "balancer-throughput.svg", "report.md", "results.json"].sort(),
    );
    for (const chart of charts) {
      const svg = await Deno.readTextFile(new URL(`${out}/${chart}`, PROJECT_ROOT));
      assert.match(svg, /^<svg[^>]*>/);
      assert.match(svg, /<text/); // rendered axes and titles, not an empty canvas
    }
    const report = await Deno.readTextFile(new URL(`${out}/report.md`, PROJECT_ROOT));
    for (const s of QUICK_SCENARIOS) assert.match(report, new RegExp(`^## ${s}$`, "m"));
    // No process of the benchmark is left behind: its etcd's data folder is gone.
    const leftovers = [...Deno.readDirSync(new URL(".bench-etcd", PROJECT_ROOT))];
    assert.deepEqual(leftovers, []);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("bench --scenarios scale --quick registers its fleet, follows every churn step and the killed fleet, samples memory and charts it", async () => {
  const out = `bench-results/test-scale-${Deno.pid}`;
  const dir = new URL(out, PROJECT_ROOT);
  const size = SCENARIOS.scale.fleet!.quick;
  try {
    const bench = spawnEntry("bench", ["--scenarios", "scale", "--quick", "--out", out], {
      captureStdout: true,
    });
    const status = await bench.status;
    assert.equal(status.code, 0, bench.log());
    const results = JSON.parse(
      await Deno.readTextFile(new URL(`${out}/results.json`, PROJECT_ROOT)),
    );
    const scale = results.runs.find((r: { scale?: unknown }) => r.scale)?.scale;
    assert.ok(scale, "a scale run");
    assert.equal(scale.backends, size.backends);
    // Every churn step was seen: registered ones picked, deregistered ones dropped.
    assert.equal(scale.neverPicked, 0);
    assert.equal(scale.registerToPickMs.length, size.repeats);
    assert.equal(scale.deregisterToLastPickMs.length, size.repeats);
    assert.equal(scale.killedServers, size.backends / size.processes);
    assert.ok(scale.memorySamples >= 1);
    assert.equal(scale.rssSamplesMiB.length, scale.memorySamples);
    assert.ok(scale.rssSamplesMiB.every((mib: number) => mib > 0));
    assert.ok(scale.loaded.rssMiB >= scale.loadedMean.rssMiB);
    assert.ok(Object.keys(scale.getServerMeanUs).length > 0);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(files, ["report.md", "results.json", "scale-memory.svg"]);
    assert.match(
      await Deno.readTextFile(new URL(`${out}/scale-memory.svg`, PROJECT_ROOT)),
      /<text/,
    );
    const report = await Deno.readTextFile(new URL(`${out}/report.md`, PROJECT_ROOT));
    assert.match(report, /^## scale$/m);
    assert.match(report, /!\[.*\]\(scale-memory\.svg\)/);
    assert.deepEqual([...Deno.readDirSync(new URL(".bench-etcd", PROJECT_ROOT))], []);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("bench refuses bad flags with one line", async () => {
  for (
    const [args, pattern] of [
      [["--scenarios", "nope"], /'--scenarios' must be one of capacity_mix, .*, heterogeneous,/],
      [["--quick", "--duration", "3"], /'--quick' and '--duration' exclude each other/],
      [["--out", "/somewhere/else"], /'--out' must be a folder it may write/],
      [["--http-port", "0"], /'--http-port' must be an integer from 1 to 65535/],
    ] as const
  ) {
    const bench = spawnEntry("bench", [...args]);
    assert.equal((await bench.status).code, 2, bench.log());
    assert.match(bench.log(), pattern);
  }
});

/** Command lines of running processes that belong to a benchmark (by their flags). */
async function benchProcesses(): Promise<string[]> {
  const ps = await new Deno.Command("ps", { args: ["-eo", "args"], stdout: "piped" }).output();
  return new TextDecoder().decode(ps.stdout).split("\n").filter((line) =>
    /\.bench-etcd\/etcd-|--etcd-prefix \/bench\/|--client-id bench-|lib\/echo_server\.ts/.test(line)
  );
}

Deno.test("bench serves the running scenario's dashboard, and stops every process it started when interrupted (SIGINT)", async () => {
  assert.deepEqual(await benchProcesses(), [], "no benchmark process before the test");
  const httpPort = freePort();
  const bench = spawnEntry("bench", [
    "--scenarios",
    "homogeneous",
    "--duration",
    "60",
    "--http-port",
    String(httpPort),
  ]);
  // Wait until a run is under way: etcd, a balancer, backends and a client are all up.
  const deadline = Date.now() + 30_000;
  while (!/\[1\/\d+\] homogeneous \/ round_robin .*[1-9]\d*\.\d\/s/.test(bench.log())) {
    assert.ok(Date.now() < deadline, `the benchmark did not start:\n${bench.log()}`);
    assert.ok(!bench.exited, bench.log());
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok((await benchProcesses()).length >= 5, "etcd, balancer, 3 backends and a client run");
  const health = await fetch(`http://127.0.0.1:${httpPort}/health`);
  assert.deepEqual([health.status, await health.text()], [200, "SERVING\n"]);
  bench.signal("SIGINT");
  const status = await bench.status;
  assert.equal(status.code, 130, bench.log());
  assert.deepEqual(await benchProcesses(), []);
  assert.deepEqual([...Deno.readDirSync(new URL(".bench-etcd", PROJECT_ROOT))], []);
});
