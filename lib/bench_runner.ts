/**
 * Runs the end-to-end benchmark: a real etcd, balancer, backends and load clients, each its own
 * process, for every scenario and every target (each policy, and the `direct` and `echo`
 * baselines), all in one run so the figures compare.
 *
 * Every process started is tracked, so {@linkcode BenchRunner.abort} (Ctrl-C) and failures tear
 * everything down: no orphan process, no leftover etcd data.
 *
 * @module
 */
import type { PolicyName } from "../policies/mod.ts";
import { type EntryProcess, spawnEntry } from "./entry_process.ts";
import { type EtcdProcess, startEtcd } from "./etcd_process.ts";
import { LatencyRecorder, type LatencySummary } from "./latency.ts";
import type { LoadProgress, LoadRunSummary } from "./load_run.ts";
import { freePort } from "./ports.ts";
import {
  type BackendClient,
  createBackendClient,
  createLoadBalancerClient,
  POLLING_CHANNEL_OPTIONS,
  type StatsResponse,
  unary,
} from "./proto.ts";
import { type Scenario, type ScenarioName, SCENARIOS } from "./bench_scenarios.ts";
import { waitFor } from "./wait.ts";

/** What a run is measured against: a policy, or a baseline. */
export type Target = PolicyName | "direct" | "echo";

/** Options of {@linkcode BenchRunner}. */
export interface BenchOptions {
  scenarios: ScenarioName[];
  policies: PolicyName[];
  /** Seconds of load per scenario and target. */
  durationS: number;
  /** Tasks in flight; `undefined` takes each scenario's own. */
  concurrency?: number;
  /** Load client processes per run (the concurrency is split between them). */
  clients: number;
  /** Work units per CPU-heavy task. */
  workUnits: number;
  /** Backends' load report period. */
  reportIntervalMs: number;
  /** Where etcd keeps its data while the run lasts (removed after). */
  etcdDir: string;
}

/** One server's share of a run. */
export interface ServerResult {
  /** `s1`, `s2`, ... in start order, with a note such as `x4 slow` or `killed`. */
  label: string;
  address: string;
  slowdown: number;
  requests: number;
  /** CPU used during the run, in percent of one core (workers included). */
  cpuPercent: number | undefined;
}

/** One scenario × target measurement. */
export interface RunResult {
  scenario: ScenarioName;
  target: Target;
  /** `tasks` (GetServer + ProcessTask, or ProcessTask alone for `direct`) or `lookups` (GetServer alone). */
  kind: "tasks" | "lookups";
  concurrency: number;
  durationS: number;
  completed: number;
  failed: number;
  failuresByCode: Record<string, number>;
  retried: number;
  /** Completed per second. */
  throughput: number;
  latencyMs: LatencySummary;
  servers: ServerResult[];
  /** Busiest server's CPU over the average, among servers up for the whole run. */
  cpuBusiestOverMean: number | undefined;
  /** What happened during the run (churn), with the second it happened at. */
  events: { atS: number; what: string }[];
}

/** A progress sample for the bar. */
export interface BenchProgress {
  /** `homogeneous / round_robin`. */
  label: string;
  /** Index of this run (1-based) and how many there are. */
  run: number;
  runs: number;
  elapsedS: number;
  totalS: number;
  /** Completed per second so far in this run. */
  rate: number;
}

interface Backend {
  label: string;
  slowdown: number;
  port: number;
  address: string;
  process: EntryProcess;
  client: BackendClient;
  /** Latest stats read, and the ones at the start of the measured window. */
  first?: StatsResponse;
  last?: StatsResponse;
  killed: boolean;
  joinedAtS?: number;
}

const LOOKUP_SECONDS_SHARE = 0.5;

/** Runs the benchmark. One instance per run. */
export class BenchRunner {
  #options: BenchOptions;
  #children = new Set<EntryProcess>();
  #etcd: EtcdProcess | undefined;
  #aborted = false;
  #onProgress: (p: BenchProgress) => void;
  #run = 0;
  #runs: number;

  /** Creates a runner; `onProgress` is called a few times per second. */
  constructor(options: BenchOptions, onProgress: (p: BenchProgress) => void = () => {}) {
    this.#options = options;
    this.#onProgress = onProgress;
    const targets = options.policies.length + 1;
    this.#runs = options.scenarios.reduce(
      (n, s) => n + targets + (SCENARIOS[s].lookups ? targets : 0),
      0,
    );
  }

  /** Number of runs (scenario × target) the benchmark will make. */
  get runs(): number {
    return this.#runs;
  }

  /** Runs every scenario for every target; tears everything down at the end. */
  async run(): Promise<RunResult[]> {
    const results: RunResult[] = [];
    try {
      this.#etcd = await startEtcd({ parentDir: this.#options.etcdDir });
      for (const name of this.#options.scenarios) {
        const scenario = SCENARIOS[name];
        for (const target of [...this.#options.policies, "direct" as const]) {
          results.push(await this.#taskRun(scenario, target));
        }
        if (scenario.lookups) {
          for (const target of [...this.#options.policies, "echo" as const]) {
            results.push(await this.#lookupRun(scenario, target));
          }
        }
      }
      return results;
    } finally {
      await this.#teardown();
    }
  }

  /** Stops every process started (Ctrl-C). */
  async abort(): Promise<void> {
    this.#aborted = true;
    await this.#teardown();
  }

  async #teardown(): Promise<void> {
    await Promise.all([...this.#children].map((child) => child.stop(3_000)));
    this.#children.clear();
    await this.#etcd?.close().catch(() => {});
    this.#etcd = undefined;
  }

  #spawn(...args: Parameters<typeof spawnEntry>): EntryProcess {
    if (this.#aborted) throw new Error("The benchmark was stopped");
    const child = spawnEntry(...args);
    this.#children.add(child);
    child.status.then(() => this.#children.delete(child));
    return child;
  }

  /** One scenario × target with tasks: fresh backends, a fresh balancer (unless direct). */
  async #taskRun(scenario: Scenario, target: PolicyName | "direct"): Promise<RunResult> {
    const o = this.#options;
    const runIndex = ++this.#run;
    const prefix = `/bench/${scenario.name}/${target}/`;
    const balancerPort = freePort();
    const balancerAddress = `127.0.0.1:${balancerPort}`;
    const etcd = this.#etcd!.endpoint;
    const backends: Backend[] = [];
    let balancer: EntryProcess | undefined;
    const startBackend = (slowdown: number, label: string): Backend => {
      const port = freePort();
      const process = this.#spawn("backend", [
        "--port",
        String(port),
        "--etcd",
        etcd,
        "--etcd-prefix",
        prefix,
        "--balancer",
        balancerAddress,
        "--slowdown",
        String(slowdown),
        "--work-units",
        String(o.workUnits),
        "--report-interval-ms",
        String(o.reportIntervalMs),
        "--log-level",
        "warning",
      ], { name: `backend ${label}` });
      const address = `127.0.0.1:${port}`;
      const backend: Backend = {
        label,
        slowdown,
        port,
        address,
        process,
        client: createBackendClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS),
        killed: false,
      };
      backends.push(backend);
      return backend;
    };
    try {
      scenario.slowdowns.forEach((slowdown, i) =>
        startBackend(slowdown, `s${i + 1}${slowdown !== 1 ? ` (x${slowdown} slow)` : ""}`)
      );
      if (target !== "direct") {
        balancer = this.#spawn("balancer", [
          "--port",
          String(balancerPort),
          "--etcd",
          etcd,
          "--etcd-prefix",
          prefix,
          "--policy",
          target,
          "--log-level",
          "warning",
        ], { name: `balancer ${target}` });
        await this.#waitForBalancer(balancerAddress, backends, balancer);
      }
      await Promise.all(backends.map((b) => this.#readStats(b, true, 20_000)));

      const concurrency = o.concurrency ?? scenario.concurrency;
      const clientArgs = [
        "--task",
        scenario.task,
        ...(target === "direct"
          ? ["--direct", backends.map((b) => b.address).join(",")]
          : ["--balancer", balancerAddress]),
      ];
      const events: RunResult["events"] = [];
      const summaries = await this.#runClients(
        `${scenario.name} / ${target}`,
        runIndex,
        clientArgs,
        concurrency,
        o.durationS,
        async (elapsedS) => {
          await Promise.all(backends.filter((b) => !b.killed).map((b) => this.#readStats(b)));
          if (!scenario.churn) return;
          if (elapsedS >= o.durationS / 3 && !backends[0].killed) {
            backends[0].killed = true;
            backends[0].label += " (killed)";
            backends[0].process.signal("SIGKILL");
            events.push({ atS: round(elapsedS, 2), what: `${backends[0].address} killed` });
          }
          if (elapsedS >= (2 * o.durationS) / 3 && backends.length === scenario.slowdowns.length) {
            const joined = startBackend(1, `s${backends.length + 1} (joined)`);
            joined.joinedAtS = elapsedS;
            events.push({ atS: round(elapsedS, 2), what: `${joined.address} started` });
          }
        },
      );
      await Promise.all(backends.filter((b) => !b.killed).map((b) => this.#readStats(b)));
      return this.#result(scenario, target, "tasks", concurrency, summaries, backends, events);
    } finally {
      for (const b of backends) b.client.close();
      await Promise.all([balancer, ...backends.map((b) => b.process)].map((p) => p?.stop(5_000)));
    }
  }

  /** One scenario × target with `GetServer` alone, against a balancer or the echo server. */
  async #lookupRun(scenario: Scenario, target: PolicyName | "echo"): Promise<RunResult> {
    const runIndex = ++this.#run;
    const port = freePort();
    const address = `127.0.0.1:${port}`;
    const prefix = `/bench/${scenario.name}/lookups-${target}/`;
    let server: EntryProcess | undefined;
    try {
      if (target === "echo") {
        server = this.#spawn("balancer", ["--port", String(port)], {
          script: "lib/echo_server.ts",
          name: "echo",
        });
      } else {
        // Three registered servers; lookups never dial them, so bare addresses are enough.
        const { createEtcdClient } = await import("./etcd.ts");
        const etcd = createEtcdClient([this.#etcd!.endpoint]);
        try {
          for (let i = 1; i <= 3; i++) {
            await etcd.put(`${prefix}127.0.0.1:${60_000 + i}`).value(`127.0.0.1:${60_000 + i}`);
          }
        } finally {
          etcd.close();
        }
        server = this.#spawn("balancer", [
          "--port",
          String(port),
          "--etcd",
          this.#etcd!.endpoint,
          "--etcd-prefix",
          prefix,
          "--policy",
          target,
          "--log-level",
          "warning",
        ], { name: `balancer ${target}` });
      }
      const lb = createLoadBalancerClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS);
      try {
        await waitFor(
          `${target} to answer GetServer`,
          async () => {
            if (server!.exited) throw new Error(`${server!.name} exited:\n${server!.log()}`);
            await unary(lb.GetServer, lb, { client_id: "bench" }, { deadline: Date.now() + 1_000 });
            return true;
          },
          20_000,
          50,
        );
      } finally {
        lb.close();
      }
      const concurrency = this.#options.concurrency ?? scenario.concurrency;
      const durationS = Math.max(0.5, this.#options.durationS * LOOKUP_SECONDS_SHARE);
      const summaries = await this.#runClients(
        `${scenario.name} / ${target} lookups`,
        runIndex,
        ["--task", "lookup", "--balancer", address],
        concurrency,
        durationS,
        () => Promise.resolve(),
      );
      return this.#result(scenario, target, "lookups", concurrency, summaries, [], []);
    } finally {
      await server?.stop(5_000);
    }
  }

  /** Waits until the balancer lists every backend with a load report. */
  async #waitForBalancer(address: string, backends: Backend[], balancer: EntryProcess) {
    const lb = createLoadBalancerClient(address, undefined, undefined, POLLING_CHANNEL_OPTIONS);
    try {
      await waitFor(
        `the balancer to list ${backends.length} backends`,
        async () => {
          const dead = [balancer, ...backends.map((b) => b.process)].find((p) => p.exited);
          if (dead) throw new Error(`${dead.name} exited:\n${dead.log()}`);
          const list = await unary(lb.ListServers, lb, {}, { deadline: Date.now() + 1_000 });
          return list.servers.filter((s) => s.has_load).length >= backends.length;
        },
        30_000,
        50,
      );
    } finally {
      lb.close();
    }
  }

  async #readStats(backend: Backend, first = false, timeoutMs = 2_000): Promise<void> {
    const read = () =>
      unary(backend.client.GetStats, backend.client, {}, { deadline: Date.now() + 1_000 });
    try {
      const stats = first
        ? await waitFor(
          `${backend.label} to answer GetStats`,
          () => {
            if (backend.process.exited) {
              throw new Error(`${backend.label} exited:\n${backend.process.log()}`);
            }
            return read();
          },
          timeoutMs,
          50,
        )
        : await read();
      if (first || backend.first === undefined) backend.first = stats;
      backend.last = stats;
    } catch (error) {
      if (first) throw error;
      // A backend that is being killed or is still starting: its last stats stand.
    }
  }

  /** Starts the load clients, drives the progress bar and `tick`, merges their summaries. */
  async #runClients(
    label: string,
    runIndex: number,
    args: string[],
    concurrency: number,
    durationS: number,
    tick: (elapsedS: number) => Promise<void>,
  ): Promise<LoadRunSummary[]> {
    const count = Math.max(1, Math.min(this.#options.clients, concurrency));
    const clients = Array.from({ length: count }, (_, i) => {
      const share = Math.floor(concurrency / count) + (i < concurrency % count ? 1 : 0);
      return this.#spawn("client", [
        ...args,
        "--duration",
        String(durationS),
        "--concurrency",
        String(share),
        "--client-id",
        `bench-${i}`,
        "--json",
        "--histogram",
        "--progress-ms",
        "250",
      ], { name: `client ${i}`, captureStdout: true });
    });
    // The run's clock starts when every client has started sending (its first progress line),
    // so churn events land at the same point of the load for every target.
    await waitFor(
      "the load clients to start",
      () => {
        const dead = clients.find((c) => c.exited && lastProgress(c.stdout()) === undefined);
        if (dead) throw new Error(`${dead.name} exited:\n${dead.log()}`);
        return clients.every((c) => lastProgress(c.stdout()) !== undefined);
      },
      20_000,
      10,
    );
    const t0 = performance.now();
    let ticking = false;
    const timer = setInterval(() => {
      const elapsedS = (performance.now() - t0) / 1_000;
      const completed = clients.reduce((n, c) => n + (lastProgress(c.stdout())?.completed ?? 0), 0);
      this.#onProgress({
        label,
        run: runIndex,
        runs: this.#runs,
        elapsedS: Math.min(elapsedS, durationS),
        totalS: durationS,
        rate: elapsedS > 0 ? completed / elapsedS : 0,
      });
      if (!ticking) {
        ticking = true;
        tick(elapsedS).finally(() => ticking = false);
      }
    }, 250);
    try {
      const statuses = await Promise.all(clients.map((c) => c.status));
      return clients.map((client, i) => {
        const summary = lastLine(client.stdout());
        if (statuses[i].code !== 0 && summary?.requests === undefined) {
          throw new Error(`${client.name} failed (${statuses[i].code}):\n${client.log()}`);
        }
        return summary as unknown as LoadRunSummary;
      });
    } finally {
      clearInterval(timer);
      while (ticking) await new Promise((r) => setTimeout(r, 10));
    }
  }

  #result(
    scenario: Scenario,
    target: Target,
    kind: RunResult["kind"],
    concurrency: number,
    summaries: LoadRunSummary[],
    backends: Backend[],
    events: RunResult["events"],
  ): RunResult {
    const latency = LatencyRecorder.merge(summaries.map((s) => s.histogram));
    const durationS = Math.max(...summaries.map((s) => s.durationS));
    const completed = sum(summaries.map((s) => s.succeeded));
    const failuresByCode: Record<string, number> = {};
    for (const s of summaries) {
      for (const [code, n] of Object.entries(s.failuresByCode)) {
        failuresByCode[code] = (failuresByCode[code] ?? 0) + n;
      }
    }
    const servers = backends.map((b): ServerResult => ({
      label: b.label,
      address: b.address,
      slowdown: b.slowdown,
      requests: sum(summaries.map((s) => s.perServer[b.address] ?? 0)),
      cpuPercent: cpuPercent(b),
    }));
    const steady = servers.filter((s, i) =>
      !backends[i].killed && backends[i].joinedAtS === undefined && s.cpuPercent !== undefined
    );
    const meanCpu = sum(steady.map((s) => s.cpuPercent!)) / steady.length;
    return {
      scenario: scenario.name,
      target,
      kind,
      concurrency,
      durationS: round(durationS, 2),
      completed,
      failed: sum(summaries.map((s) => s.failed)),
      failuresByCode,
      retried: sum(summaries.map((s) => s.retried)),
      throughput: round(durationS > 0 ? completed / durationS : 0, 2),
      latencyMs: latency.summary(),
      servers,
      cpuBusiestOverMean: steady.length > 1 && meanCpu > 0
        ? round(Math.max(...steady.map((s) => s.cpuPercent!)) / meanCpu, 3)
        : undefined,
      events,
    };
  }
}

function cpuPercent(b: Backend): number | undefined {
  if (!b.first || !b.last || b.last === b.first) return undefined;
  const cpuUs = b.last.cpu_user_us + b.last.cpu_system_us -
    (b.first.cpu_user_us + b.first.cpu_system_us);
  const wallUs = (b.last.uptime_ms - b.first.uptime_ms) * 1_000;
  return wallUs > 0 ? round((100 * cpuUs) / wallUs, 1) : undefined;
}

function lastLine(text: string): Record<string, unknown> | undefined {
  const lines = text.trim().split("\n").filter((l) => l.startsWith("{"));
  try {
    return lines.length ? JSON.parse(lines[lines.length - 1]) : undefined;
  } catch {
    return undefined;
  }
}

function lastProgress(text: string): LoadProgress | undefined {
  const end = text.lastIndexOf('{"progress":');
  if (end < 0) return undefined;
  const newline = text.indexOf("\n", end);
  const line = newline < 0 ? text.slice(end) : text.slice(end, newline);
  try {
    return JSON.parse(line).progress;
  } catch {
    return undefined;
  }
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
