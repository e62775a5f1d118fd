/**
 * The benchmark's measurement of one run: the load of one scenario and target through a
 * deployment (or `GetServer` alone), the progress bar while it lasts, the backends' stats sampled
 * 4 times a second (tasks in flight, completions per second, CPU), the scenario's churn and joins
 * on schedule, and the load clients' summaries at the end.
 *
 * @module
 */
import type { PolicyName } from "../../policies/mod.ts";
import type { LoadProgress, LoadRunSummary } from "../client/load_run.ts";
import type { EntryProcess } from "../harness/entry_process.ts";
import { waitFor } from "../harness/wait.ts";
import { type LoadBalancerClient, unary } from "../wire/proto.ts";
import {
  type Backend,
  type BenchEnvironment,
  type Deployment,
  lbClient,
  liveBackends,
  readLiveStats,
  throwIfExited,
} from "./bench_environment.ts";
import { type Measurement, round, type Target, targetLabel } from "./bench_results.ts";
import type { Scenario } from "./bench_scenarios.ts";

/** Tells the progress bar how far one run is: what runs, seconds done of how many, rate. */
export type RunProgress = (label: string, elapsedS: number, totalS: number, rate: number) => void;

/** The load of one run. */
export interface Load {
  /** What the progress bar shows. */
  label: string;
  /** Tasks (or lookups) in flight. */
  concurrency: number;
  durationS: number;
  /** Load client processes (the concurrency is split between them). */
  clients: number;
  /** Open loop: tasks a second from all clients together (Poisson); closed loop when absent. */
  rate?: number;
  /**
   * Seconds of the same load sent, and not measured, after the policy switch and before the run,
   * so the run sees the policy's state warmed by traffic (the queues drain in between).
   */
  warmupS?: number;
  progress: RunProgress;
}

/**
 * One run of `target` on `deployment`: switches its balancers to the target's policy, waits for
 * idle backends, runs the load and samples the backends meanwhile, churning or adding backends
 * as the scenario says; adds the backends' CPU use to the target's tally.
 */
export async function measureTasks(
  env: BenchEnvironment,
  deployment: Deployment,
  scenario: Scenario,
  target: Target,
  load: Load,
): Promise<Measurement> {
  const { backends } = deployment;
  if (target.policy !== "direct") {
    await Promise.all(deployment.balancers.map(({ lb }) => setPolicy(lb, target.policy)));
  }
  const addresses = deployment.balancers.map((b) => b.address);
  const clientArgs = (i: number) => [
    "--task",
    scenario.task,
    "--mode",
    target.mode,
    ...(target.policy === "direct"
      ? ["--direct", backends.map((b) => b.address).join(",")]
      : ["--balancer", addresses[i % addresses.length]]),
  ];
  // Every target starts from idle backends, whatever the previous one left queued.
  await waitFor(
    "the backends to drain",
    async () => {
      await readLiveStats(deployment);
      return backends.every((b) => b.killed || b.last?.in_flight === 0);
    },
    60_000,
    100,
  );
  if (load.warmupS) {
    await runLoad(
      env,
      { ...load, label: `${load.label}, warming up`, durationS: load.warmupS },
      clientArgs,
      () => Promise.resolve(),
    );
    await readLiveStats(deployment);
  }
  for (const b of backends) b.first = b.last;

  const events: Measurement["events"] = [];
  const timeline: Measurement["timeline"] = [];
  const inFlight: Measurement["inFlight"] = [];
  const inFlightAtS: number[] = [];
  let nextSecond = 1;
  let lastCompleted = completedBy(backends);
  const { summaries, durationS, startedAtMs } = await runLoad(
    env,
    load,
    clientArgs,
    async (elapsedS, windowP99Ms) => {
      await readLiveStats(deployment);
      inFlightAtS.push(elapsedS);
      inFlight.push(
        Object.fromEntries(
          liveBackends(deployment).map((b) => [b.address, b.last?.in_flight ?? 0]),
        ),
      );
      if (elapsedS >= nextSecond) {
        nextSecond++;
        const completed: Record<string, number> = {};
        for (const b of backends) {
          completed[b.label] = completedOf(b) - (lastCompleted.get(b) ?? completedOf(b));
        }
        lastCompleted = completedBy(backends);
        timeline.push({ atS: Math.round(elapsedS), p99Ms: windowP99Ms, completed });
      }
      events.push(...scheduledEvents(env, deployment, scenario, elapsedS, load.durationS));
    },
  );
  await readLiveStats(deployment);
  for (const b of backends) addUsage(b, targetLabel(target));
  return { summaries, durationS, events, timeline, inFlight, inFlightAtS, startedAtMs };
}

/**
 * `GetServer` alone, one run per policy of `policies` (switched with SetPolicy; `echo`, the
 * baseline, has none), through `server` at `address`; stops `server` at the end.
 */
export async function measureLookups(
  env: BenchEnvironment,
  server: EntryProcess,
  address: string,
  policies: (PolicyName | "echo")[],
  load: (policy: PolicyName | "echo") => Load,
): Promise<[Target, Measurement][]> {
  const measured: [Target, Measurement][] = [];
  const lb = lbClient(address);
  try {
    for (const policy of policies) {
      await waitFor(
        `${server.name} to answer GetServer`,
        async () => {
          throwIfExited([server]);
          await unary(lb.GetServer, lb, { client_id: "b" }, { deadline: Date.now() + 1_000 });
          return true;
        },
        20_000,
        50,
      );
      if (policy !== "echo") await setPolicy(lb, policy);
      const { summaries, durationS } = await runLoad(
        env,
        load(policy),
        () => ["--task", "lookup", "--balancer", address],
        () => Promise.resolve(),
      );
      measured.push([
        { policy, mode: "lookaside" },
        { summaries, durationS, events: [], timeline: [], inFlight: [] },
      ]);
    }
  } finally {
    lb.close();
    await server.stop();
  }
  return measured;
}

/**
 * Starts the load clients (the `i`th with `args(i)`), drives the progress bar and `tick` 4 times
 * a second, and collects the clients' summaries and the longest client's duration.
 */
async function runLoad(
  env: BenchEnvironment,
  load: Load,
  args: (i: number) => string[],
  tick: (elapsedS: number, windowP99Ms: number) => Promise<void>,
): Promise<{ summaries: LoadRunSummary[]; durationS: number; startedAtMs: number }> {
  const { durationS } = load;
  const clients = env.startClients(args, load.concurrency, durationS, load.clients, load.rate);
  // The run's clock starts when every client has started sending (its first progress line),
  // so events land at the same point of the load for every target.
  await waitFor(
    "the load clients to start",
    () => {
      throwIfExited(clients.filter((c) => lastProgress(c.stdout()) === undefined));
      return clients.every((c) => lastProgress(c.stdout()) !== undefined);
    },
    20_000,
    10,
  );
  const t0 = performance.now();
  let ticking = false;
  let windowP99 = 0;
  const timer = setInterval(() => {
    const elapsedS = (performance.now() - t0) / 1_000;
    const progress = clients.map((c) => lastProgress(c.stdout()));
    const completed = progress.reduce((n, p) => n + (p?.completed ?? 0), 0);
    windowP99 = Math.max(windowP99, ...progress.map((p) => p?.windowP99Ms ?? 0));
    load.progress(
      load.label,
      Math.min(elapsedS, durationS),
      durationS,
      elapsedS > 0 ? completed / elapsedS : 0,
    );
    if (!ticking) {
      ticking = true;
      const p99 = windowP99;
      windowP99 = 0;
      tick(elapsedS, p99).finally(() => ticking = false);
    }
  }, 250);
  try {
    const statuses = await Promise.all(clients.map((c) => c.status));
    const summaries = clients.map((client, i) => {
      const summary = lastLine(client.stdout());
      if (statuses[i].code !== 0 && summary?.requests === undefined) {
        throw new Error(`${client.name} failed (${statuses[i].code}):\n${client.log()}`);
      }
      return summary as unknown as LoadRunSummary;
    });
    return {
      summaries,
      durationS: Math.max(...summaries.map((s) => s.durationS)),
      startedAtMs: t0,
    };
  } finally {
    clearInterval(timer);
    while (ticking) await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The scenario's events due at `elapsedS` of a run of `durationS`: churn kills the first backend
 * at 1/3 and starts a new one at 2/3; joins start one more at 1/3.
 */
function scheduledEvents(
  env: BenchEnvironment,
  deployment: Deployment,
  scenario: Scenario,
  elapsedS: number,
  durationS: number,
): Measurement["events"] {
  const events: Measurement["events"] = [];
  const first = deployment.backends[0];
  if (scenario.churn && elapsedS >= durationS / 3 && !first.killed) {
    env.killBackend(first);
    events.push({ atS: round(elapsedS, 2), what: `${first.address} killed` });
  }
  const joinAt = scenario.churn ? (2 * durationS) / 3 : durationS / 3;
  if (
    (scenario.churn || scenario.joins) && elapsedS >= joinAt &&
    !deployment.backends.some((b) => b.joined)
  ) {
    const label = `s${deployment.backends.length + 1} (joined)`;
    const joined = env.startBackend(deployment, 1, label);
    joined.joined = true;
    events.push({ atS: round(elapsedS, 2), what: `${joined.address} started` });
  }
  return events;
}

function setPolicy(lb: LoadBalancerClient, policy: string): Promise<unknown> {
  return unary(lb.SetPolicy, lb, { policy }, { deadline: Date.now() + 5_000 });
}

function completedOf(b: Backend): number {
  return (b.last?.simple_completed ?? 0) + (b.last?.heavy_completed ?? 0);
}

function completedBy(backends: Backend[]): Map<Backend, number> {
  return new Map(backends.map((b) => [b, completedOf(b)]));
}

/** Adds the CPU and wall time between `b.first` and `b.last` to the target's tally. */
function addUsage(b: Backend, target: string): void {
  if (!b.first || !b.last || b.last === b.first) return;
  const tally = b.usage.get(target) ?? { cpuUs: 0, wallUs: 0 };
  tally.cpuUs += b.last.cpu_user_us + b.last.cpu_system_us -
    (b.first.cpu_user_us + b.first.cpu_system_us);
  tally.wallUs += (b.last.uptime_ms - b.first.uptime_ms) * 1_000;
  b.usage.set(target, tally);
}

/** The last JSON line of a client's stdout: its summary once it has exited. */
function lastLine(text: string): Record<string, unknown> | undefined {
  const lines = text.trim().split("\n").filter((l) => l.startsWith("{"));
  try {
    return lines.length ? JSON.parse(lines[lines.length - 1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The last progress line of a client's stdout. */
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
