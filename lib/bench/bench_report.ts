/**
 * The benchmark's output folder: `results.json` (every figure, the machine, the versions and the
 * flags), `report.md` (tables with each figure beside its baseline) and the SVG charts.
 *
 * @module
 */
import config from "../../deno.json" with { type: "json" };
import { type Chart, lookupChart, scaleMemoryChart, scenarioCharts } from "./bench_charts.ts";
import type { RunResult } from "./bench_results.ts";
import type { ScaleFigures } from "./bench_scale.ts";
import { type ScenarioName, SCENARIOS } from "./bench_scenarios.ts";
import { sweepCharts, sweepSection } from "./sweep_report.ts";

/** Everything `results.json` holds. */
export interface BenchResults {
  startedAt: string;
  /** Wall time of the whole benchmark. */
  totalS: number;
  /** The command line that produced it. */
  command: string;
  flags: Record<string, unknown>;
  machine: { cpus: number; os: string; arch: string; osRelease: string; memoryGiB: number };
  versions: { deno: string; v8: string; typescript: string; dependencies: Record<string, string> };
  runs: RunResult[];
}

/** Facts about this machine and runtime, for the record. */
export function describeMachine(): Pick<BenchResults, "machine" | "versions"> {
  return {
    machine: {
      cpus: navigator.hardwareConcurrency,
      os: Deno.build.os,
      arch: Deno.build.arch,
      osRelease: Deno.osRelease(),
      memoryGiB: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    },
    versions: { ...Deno.version, dependencies: config.imports },
  };
}

/** Writes results.json, report.md and the charts into `dir`; returns the files written. */
export async function writeReport(dir: string, results: BenchResults): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const scenarios = [...new Set(results.runs.map((r) => r.scenario))];
  const charts: Chart[] = [];
  for (const scenario of scenarios.filter((s) => !SCENARIOS[s].fleet)) {
    charts.push(
      ...SCENARIOS[scenario].sweep
        ? await sweepCharts(scenario, results.runs)
        : await scenarioCharts(scenario, results.runs),
    );
  }
  const scale = results.runs.find((r) => r.scale)?.scale;
  if (scale?.rssSamplesMiB.length) charts.push(await scaleMemoryChart(scale));
  const lookups = await lookupChart(results.runs);
  if (lookups) charts.push(lookups);
  for (const chart of charts) await Deno.writeTextFile(`${dir}/${chart.file}`, chart.svg);
  await Deno.writeTextFile(`${dir}/results.json`, JSON.stringify(results, null, 2) + "\n");
  await Deno.writeTextFile(`${dir}/report.md`, formatReport(results, charts));
  return ["results.json", "report.md", ...charts.map((c) => c.file)];
}

/** The Markdown report: one section per scenario, figures beside their baselines. */
export function formatReport(results: BenchResults, charts: Chart[]): string {
  const m = results.machine;
  const v = results.versions;
  const lines = [
    "# Benchmark report",
    "",
    `Command: \`${results.command}\``,
    "",
    `Machine: ${m.cpus} CPUs, ${m.memoryGiB} GiB, ${m.os} ${m.arch} (${m.osRelease}); ` +
    `Deno ${v.deno} (V8 ${v.v8}). Started ${results.startedAt}, took ${
      Math.round(results.totalS)
    } s. Everything (etcd, balancer, backends, load clients) ran on this one machine, each its ` +
    `own process, so they share its CPUs.`,
    "",
    "Targets: each policy through the balancer (`GetServer`, then `ProcessTask` on the named " +
    "server); `direct`, the same load sent round robin straight to the backends with no balancer " +
    "(the round-trip floor); `echo`, a bare grpc-js server answering `GetServer` with a constant " +
    "(the ceiling for the balancer's own throughput). Ratios compare with `round_robin` in the " +
    "same run.",
    "",
  ];
  const scenarios = [...new Set(results.runs.map((r) => r.scenario))];
  for (const scenario of scenarios) {
    lines.push(...scenarioSection(scenario, results.runs, charts));
  }
  return lines.join("\n") + "\n";
}

/** Markdown table of the task runs of one scenario. */
export function taskTable(scenario: ScenarioName, runs: RunResult[]): string[] {
  const tasks = runs.filter((r) => r.scenario === scenario && r.kind === "tasks");
  const rr = tasks.find((r) => r.target === "round_robin");
  const ratio = (value: number, of: number | undefined) => of ? `${(value / of).toFixed(2)}` : "";
  const rows = [
    "| target | completed | failed | req/s | ×RR req/s | p50 ms | p90 ms | p99 ms | ×RR p99 | max ms | share per server | CPU % of a core per server | busiest/mean CPU |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
  ];
  for (const r of tasks) {
    const total = r.servers.reduce((n, s) => n + s.requests, 0);
    const share = r.servers.map((s) =>
      `${s.label} ${total ? ((100 * s.requests) / total).toFixed(0) : 0}%`
    ).join(", ");
    const cpu = r.servers.map((s) => `${s.label} ${s.cpuPercent ?? "–"}`).join(", ");
    rows.push(
      `| ${r.target} | ${r.completed} | ${r.failed} | ${r.throughput.toFixed(1)} | ${
        ratio(r.throughput, rr?.throughput)
      } | ${r.latencyMs.p50} | ${r.latencyMs.p90} | ${r.latencyMs.p99} | ${
        ratio(r.latencyMs.p99, rr?.latencyMs.p99)
      } | ${r.latencyMs.max} | ${share} | ${cpu} | ${r.cpuBusiestOverMean ?? "–"} |`,
    );
  }
  return rows;
}

/**
 * Markdown table of where the tasks in flight sat during each task run of one scenario (sampled
 * 4 times a second): herding piles them on one server at a time.
 */
export function inFlightTable(scenario: ScenarioName, runs: RunResult[]): string[] {
  const tasks = runs.filter((r) => r.scenario === scenario && r.kind === "tasks");
  const rows = [
    "| target | in flight per server, mean / max | largest server's share of the tasks in flight, mean |",
    "| --- | --- | ---: |",
  ];
  for (const r of tasks) {
    const perServer = r.servers.map((s) =>
      `${s.label} ${s.inFlight ? `${s.inFlight.mean} / ${s.inFlight.max}` : "–"}`
    ).join(", ");
    const top = r.inFlightTopShare === undefined
      ? "–"
      : `${(100 * r.inFlightTopShare).toFixed(0)}%`;
    rows.push(`| ${r.target} | ${perServer} | ${top} |`);
  }
  return rows;
}

/** Markdown table of the lookup runs (GetServer alone) against the echo ceiling. */
export function lookupTable(runs: RunResult[]): string[] {
  const lookups = runs.filter((r) => r.kind === "lookups");
  const echo = lookups.find((r) => r.target === "echo");
  const rows = [
    "| target | GetServer/s | × echo | p50 ms | p99 ms | failed |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of lookups) {
    rows.push(
      `| ${r.target} | ${r.throughput.toFixed(0)} | ${
        echo ? (r.throughput / echo.throughput).toFixed(2) : ""
      } | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.failed} |`,
    );
  }
  return rows;
}

/** Markdown table of the `scale` scenario's figures. */
export function scaleTable(scale: ScaleFigures): string[] {
  const p50 = (values: number[]) => [...values].sort((a, b) => a - b)[(values.length - 1) >> 1];
  const p50Max = (values: number[]) =>
    values.length ? `${p50(values)} / ${Math.max(...values)}` : "–";
  const means = Object.entries(scale.getServerMeanUs).map(([p, us]) => `${p} ${us}`).join(", ");
  const rt = scale.getServerRoundTripMs;
  return [
    "| figure | value |",
    "| --- | ---: |",
    `| servers registered (fleet processes) | ${scale.backends} (${scale.fleetProcesses}) |`,
    `| start: fleets started to every server in the picks | ${scale.startupS} s |`,
    `| registration (lease grant + put) to first pick, p50 / max of ${scale.registerToPickMs.length} | ${
      p50Max(scale.registerToPickMs)
    } ms |`,
    `| registrations never picked before their deregistration ${scale.intervalMs} ms later | ${scale.neverPicked} |`,
    `| of which etcd lease grant + put, p50 / max | ${p50Max(scale.etcdPutMs)} ms |`,
    `| deregistration (etcd delete) to last pick, p50 / max of ${scale.deregisterToLastPickMs.length} | ${
      p50Max(scale.deregisterToLastPickMs)
    } ms |`,
    `| of which etcd delete + revoke, p50 / max | ${p50Max(scale.etcdDeleteMs)} ms |`,
    `| SIGKILL of a fleet process (${scale.killedServers} servers) to the last pick of any | ${scale.killToLastPickMs} ms |`,
    `| balancer resident memory, no server → all servers (mean / max of ${scale.memorySamples} samples) | ${scale.idle.rssMiB} → ${scale.loadedMean.rssMiB} / ${scale.loaded.rssMiB} MiB (max ${
      Math.round(scale.loaded.rssMiB * 10.48576) / 10
    } MB) |`,
    `| balancer V8 heap used, no server → all servers (mean / max) | ${scale.idle.heapUsedMiB} → ${scale.loadedMean.heapUsedMiB} / ${scale.loaded.heapUsedMiB} MiB |`,
    `| balancer CPU while health-checking them all (${scale.cpuWindowS} s window) | ${scale.cpuPercent} % of a core |`,
    `| GetServer inside the balancer, mean µs by policy | ${means} |`,
    `| GetServer round trip seen by the bench (${scale.getServerCalls} calls), p50 / p99 | ${rt.p50} / ${rt.p99} ms |`,
  ];
}

function scenarioSection(scenario: ScenarioName, runs: RunResult[], charts: Chart[]): string[] {
  const s = SCENARIOS[scenario];
  if (s.sweep) return sweepSection(scenario, s.description, runs, charts);
  const scale = runs.find((r) => r.scenario === scenario && r.scale)?.scale;
  if (scale) {
    const lines = [`## ${scenario}`, "", `${s.description}.`, "", ...scaleTable(scale), ""];
    for (const chart of charts.filter((c) => c.file.startsWith(`${scenario}-`))) {
      lines.push(`![${chart.title}](${chart.file})`, "");
    }
    return lines;
  }
  const tasks = runs.filter((r) => r.scenario === scenario && r.kind === "tasks");
  const lines = [
    `## ${scenario}`,
    "",
    `${s.description}; ${tasks[0]?.concurrency ?? s.concurrency} tasks in flight, ${
      tasks[0]?.durationS ?? "?"
    } s per target.`,
    "",
    ...taskTable(scenario, runs),
    "",
  ];
  if (s.balancers !== undefined) {
    lines.push(
      "Tasks in flight at each server (queued included), sampled 4 times a second:",
      "",
      ...inFlightTable(scenario, runs),
      "",
    );
  }
  const events = tasks.flatMap((r) => r.events.map((e) => `${r.target}: ${e.what} at ${e.atS} s`));
  if (events.length) lines.push(`Events: ${events.join("; ")}.`, "");
  if (runs.some((r) => r.scenario === scenario && r.kind === "lookups")) {
    lines.push(
      "Balancer alone (`GetServer` only, same concurrency):",
      "",
      ...lookupTable(runs.filter((r) => r.scenario === scenario)),
      "",
    );
  }
  for (const chart of charts.filter((c) => c.file.startsWith(`${scenario}-`))) {
    lines.push(`![${chart.title}](${chart.file})`, "");
  }
  if (s.lookups) {
    const chart = charts.find((c) => c.file === "balancer-throughput.svg");
    if (chart) lines.push(`![${chart.title}](${chart.file})`, "");
  }
  return lines;
}
