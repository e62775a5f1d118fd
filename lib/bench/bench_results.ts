/**
 * The benchmark's result records, one per scenario × target, as `results.json` holds them and
 * bench_report.ts and bench_charts.ts read them; and their assembly from what the runs of a
 * target measured.
 *
 * @module
 */
import type { PolicyName } from "../../policies/mod.ts";
import { LatencyRecorder, type LatencySummary } from "../client/latency.ts";
import type { LoadRunSummary } from "../client/load_run.ts";
import type { ClientMode } from "../client/task_client.ts";
import type { Backend } from "./bench_environment.ts";
import type { ScaleFigures } from "./bench_scale.ts";
import type { Scenario, ScenarioName } from "./bench_scenarios.ts";
import type { SweepFigures } from "./bench_sweep.ts";

/** What a run is measured against: a policy (in a client mode), or a baseline. */
export interface Target {
  policy: PolicyName | "direct" | "echo";
  mode: ClientMode;
  /** Balancer replicas the load goes through (the `replicas` scenario); 1 when absent. */
  balancers?: number;
  /** The balancers run with `--replica-unaware`: each counts its own picks once (the trap). */
  replicaUnaware?: boolean;
}

/**
 * `least_load`, `least_load (watch)`, `least_load (2 balancers)`,
 * `least_load (2 balancers, replica-unaware)`, `direct`.
 */
export function targetLabel(target: Target): string {
  const label = target.mode === "watch" ? `${target.policy} (watch)` : target.policy;
  if ((target.balancers ?? 1) === 1) return label;
  return `${label} (${target.balancers} balancers${
    target.replicaUnaware ? ", replica-unaware" : ""
  })`;
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
  /** Tasks in flight at the server (queued included), sampled 4 times a second: mean and max. */
  inFlight?: { mean: number; max: number };
}

/** One second of a run: tasks each server completed, and the clients' p99 in that second. */
export interface TimelinePoint {
  atS: number;
  p99Ms: number;
  /** Tasks completed in this second, by server label. */
  completed: Record<string, number>;
}

/** One scenario × target measurement. */
export interface RunResult {
  scenario: ScenarioName;
  /** Label of the target, e.g. `least_load (watch)`. */
  target: string;
  policy: Target["policy"];
  mode: ClientMode;
  /**
   * `tasks` (lookup + task, or the task alone for `direct`), `lookups` (GetServer alone), or
   * `scale` (the `scale` scenario: its figures are in `scale`, its GetServer round trips in
   * `latencyMs`).
   */
  kind: "tasks" | "lookups" | "scale";
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
  /**
   * Mean, over the in-flight samples, of the largest share of the tasks in flight that one server
   * held (1/servers when even, 1 when one server held them all): herding shows here.
   */
  inFlightTopShare?: number;
  /** What happened during the run (churn, joins), with the second it happened at. */
  events: { atS: number; what: string }[];
  timeline: TimelinePoint[];
  /** The `scale` scenario's figures. */
  scale?: ScaleFigures;
  /** A sweep run's figures: offered load, overloaded servers, the simulator's and oracle's. */
  sweep?: SweepFigures;
}

/** What one or more runs of a target measured, before it becomes a {@linkcode RunResult}. */
export interface Measurement {
  /** Every load client's summary. */
  summaries: LoadRunSummary[];
  /** Seconds of load. */
  durationS: number;
  events: RunResult["events"];
  timeline: TimelinePoint[];
  /** Tasks in flight at each live server (by address), one sample per tick. */
  inFlight: Record<string, number>[];
  /** When each of those samples was taken, in seconds of the run. */
  inFlightAtS?: number[];
  /** When the run's clock started (`performance.now()`), for a run measured by itself. */
  startedAtMs?: number;
}

/** The rounds of one target as one measurement: their loads added up, one after another. */
export function mergeRounds(rounds: Measurement[]): Measurement {
  return {
    summaries: rounds.flatMap((r) => r.summaries),
    durationS: sum(rounds.map((r) => r.durationS)),
    events: rounds.flatMap((r) => r.events),
    timeline: rounds.flatMap((r) => r.timeline),
    inFlight: rounds.flatMap((r) => r.inFlight),
    inFlightAtS: rounds.flatMap((r) => r.inFlightAtS ?? []),
  };
}

/**
 * The record of a load run: the clients' histograms merged and their counts added up, and each
 * of `backends`' share of the tasks, CPU and tasks in flight.
 */
export function runResult(
  scenario: Scenario,
  target: Target,
  kind: "tasks" | "lookups",
  concurrency: number,
  measured: Measurement,
  backends: Backend[],
): RunResult {
  const { summaries, durationS, inFlight } = measured;
  const latency = LatencyRecorder.merge(summaries.map((s) => s.histogram));
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
    cpuPercent: cpuPercent(b, targetLabel(target)),
    inFlight: inFlightOf(inFlight.map((sample) => sample[b.address])),
  }));
  const steady = servers.filter((s, i) =>
    !backends[i].killed && !backends[i].joined && s.cpuPercent !== undefined
  );
  const meanCpu = sum(steady.map((s) => s.cpuPercent!)) / steady.length;
  return {
    scenario: scenario.name,
    target: targetLabel(target),
    policy: target.policy,
    mode: target.mode,
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
    inFlightTopShare: topShare(inFlight),
    events: measured.events,
    timeline: measured.timeline,
  };
}

/** The record of the `scale` scenario: its figures, and its GetServer round trips as latency. */
export function scaleResult(
  scenario: Scenario,
  concurrency: number,
  durationS: number,
  figures: ScaleFigures,
): RunResult {
  return {
    scenario: scenario.name,
    target: "scale",
    policy: "round_robin",
    mode: "lookaside",
    kind: "scale",
    concurrency,
    durationS: round(durationS, 2),
    completed: figures.getServerCalls,
    failed: 0,
    failuresByCode: {},
    retried: 0,
    throughput: 0,
    latencyMs: figures.getServerRoundTripMs,
    servers: [],
    cpuBusiestOverMean: undefined,
    events: [],
    timeline: [],
    scale: figures,
  };
}

/** CPU use of `b` during the target's runs, in percent of one core. */
function cpuPercent(b: Backend, target: string): number | undefined {
  const tally = b.usage.get(target);
  return tally && tally.wallUs > 0 ? round((100 * tally.cpuUs) / tally.wallUs, 1) : undefined;
}

/** Mean and max of one server's in-flight samples (those taken while it was up). */
function inFlightOf(samples: (number | undefined)[]): ServerResult["inFlight"] {
  const up = samples.filter((n): n is number => n !== undefined);
  if (up.length === 0) return undefined;
  return { mean: round(sum(up) / up.length, 1), max: Math.max(...up) };
}

/** Mean, over the samples with any task in flight, of the largest server's share of them. */
function topShare(samples: Measurement["inFlight"]): number | undefined {
  const shares = samples.flatMap((sample) => {
    const counts = Object.values(sample);
    const total = sum(counts);
    return total > 0 ? [Math.max(...counts) / total] : [];
  });
  return shares.length ? round(sum(shares) / shares.length, 3) : undefined;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** `value` rounded to `digits` decimals, as the records hold their figures. */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
