/**
 * `deno task simulate:study`: the large simulation of issue 16 (item 6). 1,000 servers of mixed
 * capacity, 10 balancers, 200 clients, load reports every 0.1 to 5 s: every policy in lookaside
 * and watch mode, and the sim-only references, for which policies herd and what stale reports
 * cost in tail latency. Writes `docs/sim/study.json` (every figure and the command),
 * `docs/sim/study.md` (the tables) and two charts; `docs/simulator.md` reads them.
 *
 * @module
 */
import { POLICY_NAMES } from "../../policies/mod.ts";
import { meanServiceTime, parseServiceTime } from "../backend/service_time.ts";
import { renderSvg, VEGA_LITE_SCHEMA } from "../bench/bench_charts.ts";
import {
  FlagReader,
  type FlagSpecs,
  HELP_FLAG,
  parseFlags,
  runMain,
  usage,
} from "../runtime/flags.ts";
import { SIM_POLICY_NAMES } from "./sim_policies.ts";
import { type SimMode, type SimOptions, simulate } from "./simulator.ts";

const PROGRAM = "simulate:study";

/** Report intervals swept (ms). */
export const STUDY_INTERVALS_MS = [100, 500, 1_000, 2_000, 5_000];

/**
 * Policies that never read a load report: the same requests give the same picks at every report
 * interval, so each is run once per mode, at the longest duration.
 */
const LOAD_BLIND = new Set(["round_robin", "pick_first", "consistent_hash"]);

/** What the study simulates. */
export interface StudyConfig {
  /** Capacity factor of each server. */
  capacities: number[];
  /** How `capacities` was made, for the report. */
  pool: string;
  service: string;
  load: number;
  balancers: number;
  clients: number;
  seed: number;
  intervalsMs: number[];
  /** Simulated seconds of arrivals at report interval `intervalMs`. */
  secondsAt: (intervalMs: number) => number;
  /** Simulated seconds of arrivals of the runs that do not depend on the interval. */
  longestSeconds: number;
}

/** The study as committed: 1,000 servers, half at 1, a quarter at 0.5, a quarter at 0.25. */
export function studyConfig(quick: boolean): StudyConfig {
  const n = 1_000;
  const scale = quick ? 0.1 : 1;
  return {
    capacities: Array.from({ length: n }, (_, i) => i < n / 2 ? 1 : i < 3 * n / 4 ? 0.5 : 0.25),
    pool: "1,000 servers: 500 at capacity 1, 250 at 0.5, 250 at 0.25 (one slot each)",
    service: "lognormal:20ms:0.5",
    load: 0.85,
    balancers: 10,
    clients: 200,
    seed: 1,
    intervalsMs: STUDY_INTERVALS_MS,
    // At least 10 s, 20 report intervals up to 60 s (12 intervals at 5 s).
    secondsAt: (intervalMs) => scale * Math.min(60, Math.max(10, 20 * intervalMs / 1_000)),
    longestSeconds: scale * 60,
  };
}

/**
 * A run whose overloaded servers got at least this share of the requests is reported as an
 * overload, not by its latency: past its p99.
 */
export const OVERLOAD_SHARE = 0.01;

/** One run of the study. */
export interface StudyRun {
  policy: string;
  /** `perfect` for the sim-only references, which read the servers' true state. */
  mode: SimMode | "perfect";
  /** The report interval (ms); `null` for runs that are the same at every interval. */
  intervalMs: number | null;
  requests: number;
  simulatedS: number;
  meanMs: number;
  p99Ms: number;
  p999Ms: number;
  busiestInFlight: number;
  /** Share of the requests sent to the servers of each capacity, by capacity. */
  capacityShares: Record<string, number>;
  /** Servers whose queue grew without bound. */
  overloadedServers: number;
  /**
   * Share of the requests sent to those servers: from {@linkcode OVERLOAD_SHARE} on, the latency
   * measures the run's length rather than the policy.
   */
  overloadedShare: number;
  /** Wall-clock seconds the run took. */
  wallS: number;
}

/** Everything the study measured. */
export interface StudyResult {
  command: string;
  date: string;
  config: Omit<StudyConfig, "secondsAt" | "capacities"> & {
    /** Offered requests per second. */
    ratePerS: number;
    /** The smallest capacity, and its servers' share of the pool's capacity. */
    slowestCapacity: number;
    slowestCapacityShare: number;
    /** Simulated seconds of arrivals by report interval (ms). */
    secondsAtIntervalMs: Record<string, number>;
  };
  runs: StudyRun[];
  wallS: number;
}

interface Planned {
  policy: string;
  mode: SimMode | "perfect";
  intervalMs: number | null;
  seconds: number;
}

/** The runs of the study, cheapest first. */
function plan(config: StudyConfig): Planned[] {
  const runs: Planned[] = SIM_POLICY_NAMES.map((policy) => ({
    policy,
    mode: "perfect" as const,
    intervalMs: null,
    seconds: config.longestSeconds,
  }));
  const modes: SimMode[] = ["lookaside", "watch"];
  for (const policy of POLICY_NAMES.filter((p) => LOAD_BLIND.has(p))) {
    for (const mode of modes) {
      runs.push({ policy, mode, intervalMs: null, seconds: config.longestSeconds });
    }
  }
  for (const intervalMs of [...config.intervalsMs].sort((a, b) => b - a)) {
    for (const policy of POLICY_NAMES.filter((p) => !LOAD_BLIND.has(p))) {
      for (const mode of modes) {
        runs.push({ policy, mode, intervalMs, seconds: config.secondsAt(intervalMs) });
      }
    }
  }
  return runs;
}

/** Offered requests per second of `config`'s pool (one slot per server). */
function ratePerS(config: StudyConfig): number {
  const meanMs = meanServiceTime(parseServiceTime(config.service));
  const sum = config.capacities.reduce((s, f) => s + f, 0);
  return config.load * sum * 1_000 / meanMs;
}

/** Runs the study; `progress` hears of each run as it ends. */
export function runStudy(
  config: StudyConfig,
  command: string,
  progress: (line: string) => void = () => {},
): StudyResult {
  const started = performance.now();
  const service = parseServiceTime(config.service);
  const rate = ratePerS(config);
  const planned = plan(config);
  const longest = Math.max(...config.intervalsMs);
  const runs = planned.map((run, k): StudyRun => {
    const requests = Math.round(run.seconds * rate);
    const options: SimOptions = {
      capacities: config.capacities,
      service,
      slots: 1,
      load: config.load,
      policy: run.policy,
      requests,
      warmup: 0.1,
      clients: config.clients,
      mode: run.mode === "perfect" ? "lookaside" : run.mode,
      balancers: config.balancers,
      reportIntervalMs: run.intervalMs ?? longest,
      seed: config.seed,
      steadyStart: true,
    };
    const t0 = performance.now();
    const result = simulate(options);
    const wallS = (performance.now() - t0) / 1_000;
    const figures: StudyRun = {
      policy: run.policy,
      mode: run.mode,
      intervalMs: run.intervalMs,
      requests,
      simulatedS: result.simulatedS,
      meanMs: result.latencyMs.mean,
      p99Ms: result.latencyMs.p99,
      p999Ms: result.latencyMs.p999,
      busiestInFlight: result.busiestInFlight,
      overloadedServers: result.servers.filter((s) => s.overloaded).length,
      overloadedShare: result.servers.reduce((sum, s) => sum + (s.overloaded ? s.share : 0), 0),
      capacityShares: sharesByCapacity(result.servers),
      wallS,
    };
    progress(
      `[${k + 1}/${planned.length}] ${run.policy} ${run.mode}` +
        `${run.intervalMs === null ? "" : ` ${run.intervalMs / 1_000} s`}: ` +
        `${requests.toLocaleString("en-US")} requests, p99 ${Math.round(figures.p99Ms)} ms, ` +
        `busiest ${figures.busiestInFlight.toFixed(1)}` +
        `${figures.overloadedServers ? `, ${figures.overloadedServers} overloaded` : ""} ` +
        `(${wallS.toFixed(1)} s)`,
    );
    return figures;
  });
  const { secondsAt, capacities: _, ...rest } = config;
  const slowest = Math.min(...config.capacities);
  return {
    command,
    date: new Date().toISOString().slice(0, 10),
    config: {
      ...rest,
      ratePerS: rate,
      slowestCapacity: slowest,
      slowestCapacityShare: config.capacities.filter((f) => f === slowest).length * slowest /
        config.capacities.reduce((sum, f) => sum + f, 0),
      secondsAtIntervalMs: Object.fromEntries(config.intervalsMs.map((i) => [i, secondsAt(i)])),
    },
    runs,
    wallS: (performance.now() - started) / 1_000,
  };
}

/** The share of the requests each capacity's servers got, by capacity. */
function sharesByCapacity(
  servers: readonly { capacity: number; share: number }[],
): Record<string, number> {
  const shares: Record<string, number> = {};
  for (const { capacity, share } of servers) shares[capacity] = (shares[capacity] ?? 0) + share;
  return shares;
}

/** The run of `policy` in `mode` at `intervalMs` (or its interval-free run). */
function find(
  result: StudyResult,
  policy: string,
  mode: StudyRun["mode"],
  intervalMs: number,
): StudyRun | undefined {
  return result.runs.find((r) =>
    r.policy === policy && r.mode === mode && (r.intervalMs === null || r.intervalMs === intervalMs)
  );
}

/** The rows of the tables: every real policy in each mode, then the references. */
function rows(result: StudyResult): { policy: string; mode: StudyRun["mode"] }[] {
  const modes = ["lookaside", "watch"] as const;
  return [
    ...modes.flatMap((mode) => POLICY_NAMES.map((policy) => ({ policy, mode }))),
    ...SIM_POLICY_NAMES.map((policy) => ({ policy, mode: "perfect" as const })),
  ].filter(({ policy, mode }) => result.runs.some((r) => r.policy === policy && r.mode === mode));
}

const thousands = (v: number) => Math.round(v).toLocaleString("en-US");

/** Whether `run`'s overloaded servers got enough requests that its latency means nothing. */
function overloads(run: StudyRun): boolean {
  return run.overloadedShare >= OVERLOAD_SHARE;
}

/** One table: a row per policy and mode, a column per report interval. */
function table(
  result: StudyResult,
  what: (run: StudyRun) => string,
): string {
  const intervals = result.config.intervalsMs;
  const header = [
    "| policy | mode | " + intervals.map((i) => `${i / 1_000} s`).join(" | ") + " |",
    "| --- | --- | " + intervals.map(() => "---:").join(" | ") + " |",
  ];
  const body = rows(result).map(({ policy, mode }) => {
    const cells = intervals.map((i) => {
      const run = find(result, policy, mode, i);
      if (run === undefined) return "";
      if (overloads(run)) return "overload";
      return run.overloadedServers > 0 ? `${what(run)} (${run.overloadedServers}†)` : what(run);
    });
    return `| \`${policy}\` | ${mode} | ${cells.join(" | ")} |`;
  });
  return [...header, ...body].join("\n");
}

/** The study's tables as Markdown. */
export function studyMarkdown(result: StudyResult): string {
  const c = result.config;
  const slowest = String(c.slowestCapacity);
  const secs = Object.entries(c.secondsAtIntervalMs).map(([i, s]) =>
    `${Number(i) / 1_000} s: ${s} s`
  );
  return [
    "# Beyond the machine: the 1,000-server study",
    "",
    `Written by \`${result.command}\` on ${result.date} (\`lib/sim/sim_study.ts\`; every figure is in`,
    "[study.json](study.json)). What the figures mean: [the simulator](../simulator.md#beyond-the-machine-1000-servers).",
    "",
    `- Pool: ${c.pool}; service \`${c.service}\` at capacity 1; offered load ${c.load} of the pool's`,
    `  capacity (${thousands(c.ratePerS)} requests/s).`,
    `- ${c.balancers} balancers; ${c.clients} clients (client k asks, or in watch mode follows,`,
    `  balancer k mod ${c.balancers}); seed ${c.seed}; the first 10 % of the requests left out.`,
    `- Arrivals last, by report interval: ${secs.join(", ")}. Policies that read no report`,
    `  (${
      [...LOAD_BLIND].join(", ")
    }) and the references (perfect knowledge, no reports) ran once for`,
    `  ${c.longestSeconds} s; their figure stands in every column.`,
    `- "overload": servers whose queue still grew at the end of the arrivals got ${
      100 * OVERLOAD_SHARE
    } % of the`,
    "  requests or more, so the latency would measure the run's length. \"N†\": N servers' queues",
    `  still grew, but they got less than ${
      100 * OVERLOAD_SHARE
    } % of the requests; the figure stands for the rest.`,
    `- Total: ${result.runs.length} runs, ${Math.round(result.wallS)} s of wall-clock time.`,
    "",
    "## p99 latency (ms)",
    "",
    table(result, (r) => thousands(r.p99Ms)),
    "",
    "## Mean latency (ms)",
    "",
    table(result, (r) => thousands(r.meanMs)),
    "",
    "## Herding: the busiest server's requests",
    "",
    "The largest number of requests (in service and waiting) at any one server, averaged over samples",
    "every 10 ms of the measured window.",
    "",
    table(result, (r) => r.busiestInFlight.toFixed(1)),
    "",
    `## Share of the requests sent to the ${slowest} servers (%)`,
    "",
    `Their share of the pool's capacity is ${(100 * c.slowestCapacityShare).toFixed(1)} %.`,
    "",
    table(result, (r) => (100 * (r.capacityShares[slowest] ?? 0)).toFixed(1)),
    "",
  ].join("\n");
}

/** One chart's points: real policies against the interval, references flat across it. */
function points(result: StudyResult, value: (run: StudyRun) => number) {
  return rows(result).flatMap(({ policy, mode }) =>
    result.config.intervalsMs.flatMap((intervalMs) => {
      const run = find(result, policy, mode, intervalMs);
      if (run === undefined || overloads(run)) return [];
      return [{
        policy,
        mode: mode === "perfect" ? "perfect knowledge" : mode,
        intervalS: intervalMs / 1_000,
        value: value(run),
      }];
    })
  );
}

/** A chart of `value` against the report interval, a panel per mode, log y. */
function intervalChart(
  result: StudyResult,
  title: string,
  yTitle: string,
  value: (run: StudyRun) => number,
): Promise<string> {
  const all = points(result, value);
  const panel = (mode: SimMode) => ({
    title: mode,
    width: 360,
    height: 260,
    data: { values: all.filter((p) => p.mode === mode || p.mode === "perfect knowledge") },
    mark: { type: "line" as const, point: true },
    encoding: {
      x: {
        field: "intervalS",
        type: "quantitative" as const,
        scale: { type: "log" as const },
        axis: { values: result.config.intervalsMs.map((i) => i / 1_000) },
        title: "report interval (s)",
      },
      y: {
        field: "value",
        type: "quantitative" as const,
        scale: { type: "log" as const },
        title: yTitle,
      },
      color: { field: "policy", type: "nominal" as const, title: "policy" },
      strokeDash: {
        field: "mode",
        type: "nominal" as const,
        title: null,
        scale: {
          domain: ["lookaside", "watch", "perfect knowledge"],
          range: [[1, 0], [1, 0], [4, 3]],
        },
      },
    },
  });
  return renderSvg({
    $schema: VEGA_LITE_SCHEMA,
    title,
    background: "white",
    hconcat: [panel("lookaside"), panel("watch")],
    resolve: { scale: { y: "shared" } },
  });
}

/** The study's charts: p99 and the busiest server against the report interval. */
export async function studyCharts(result: StudyResult): Promise<{ file: string; svg: string }[]> {
  return [
    {
      file: "staleness-p99.svg",
      svg: await intervalChart(
        result,
        "p99 latency against report interval (1,000 servers, load 0.85; overloaded runs left out)",
        "p99 latency (ms, log)",
        (r) => r.p99Ms,
      ),
    },
    {
      file: "herding.svg",
      svg: await intervalChart(
        result,
        "Herding: the busiest server's requests (mean of 10 ms samples; overloaded runs left out)",
        "requests at the busiest server (log)",
        (r) => r.busiestInFlight,
      ),
    },
  ];
}

const STUDY_FLAGS = {
  quick: {
    type: "boolean",
    help: "a tenth of the requests, and print the tables instead of writing docs/sim/",
  },
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

const STUDY_USAGE = usage({
  command: "deno task simulate:study [flags]",
  about: "Simulates 1,000 servers, 10 balancers and 200 clients with every policy at report " +
    "intervals from 0.1 to 5 s, in lookaside and watch mode, and writes docs/sim/study.json, " +
    "study.md, staleness-p99.svg and herding.svg. Takes about 10 minutes; progress on stderr.",
  examples: ["deno task simulate:study", "deno task simulate:study --quick"],
}, STUDY_FLAGS);

/** Where the study writes. */
const OUT = "docs/sim";

async function main(): Promise<void> {
  const flags = parseFlags(PROGRAM, Deno.args, STUDY_FLAGS);
  if (flags.help) {
    console.log(STUDY_USAGE);
    return;
  }
  const quick = new FlagReader(PROGRAM, STUDY_FLAGS, flags).boolean("quick");
  const command = ["deno task simulate:study", ...Deno.args].join(" ");
  const result = runStudy(studyConfig(quick), command, (line) => console.error(line));
  const markdown = studyMarkdown(result);
  if (quick) {
    console.log(markdown);
    return;
  }
  await Deno.mkdir(OUT, { recursive: true });
  await Deno.writeTextFile(`${OUT}/study.json`, studyJson(result));
  await Deno.writeTextFile(`${OUT}/study.md`, markdown);
  for (const chart of await studyCharts(result)) {
    await Deno.writeTextFile(`${OUT}/${chart.file}`, chart.svg);
  }
  console.error(`Wrote ${OUT}/study.json, study.md, staleness-p99.svg, herding.svg`);
}

/** The study as JSON, a line per run. */
export function studyJson(result: StudyResult): string {
  const { runs, ...rest } = result;
  const lines = runs.map((run) => "    " + JSON.stringify(run, rounded));
  return JSON.stringify(rest, rounded, 2).replace(
    /\n}$/,
    `,\n  "runs": [\n${lines.join(",\n")}\n  ]\n}\n`,
  );
}

/** JSON numbers to the microsecond (ms) or a thousandth. */
function rounded(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isInteger(value)
    ? Math.round(value * 1e3) / 1e3
    : value;
}

if (import.meta.main) await runMain(main);
