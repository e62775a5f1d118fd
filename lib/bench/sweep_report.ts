/**
 * The report of a load sweep (lib/bench/bench_sweep.ts): p99 against offered load per policy
 * beside the simulator's and the oracle's, capacity at SLO as a ratio to round robin's, and the
 * charts: p99 against load with the oracle line, capacity at SLO as bars, and, where a server's
 * capacity changes, its share of the tasks second by second.
 *
 * @module
 */
import type { Chart } from "./bench_charts.ts";
import { renderSvg, VEGA_LITE_SCHEMA } from "./bench_charts.ts";
import type { RunResult } from "./bench_results.ts";
import type { ScenarioName } from "./bench_scenarios.ts";

/** A sweep run: a {@linkcode RunResult} with its sweep figures. */
type SweepRun = RunResult & { sweep: NonNullable<RunResult["sweep"]> };

/** Capacity at SLO read off the swept loads. */
export interface GridCapacity {
  /** The load, interpolated between the last load that met the SLO and the first that missed. */
  load: number;
  /** `below`: missed at the lowest load swept; `above`: met at the highest. */
  bound: "below" | "within" | "above";
}

/** The sweep runs of `scenario`. */
export function sweepRuns(scenario: ScenarioName, runs: RunResult[]): SweepRun[] {
  return runs.filter((r): r is SweepRun => r.scenario === scenario && r.sweep !== undefined);
}

/** Whether a run's p99 measures queueing, not the run's length: no queue grew without bound. */
export function meetsSlo(run: SweepRun): boolean {
  return run.sweep.overloaded.length === 0 && run.latencyMs.p99 <= run.sweep.sloMs;
}

/**
 * The highest offered load whose p99 stays within the SLO, from one policy's runs: the loads are
 * taken in order until one misses, and the crossing is interpolated on log p99.
 */
export function gridCapacityAtSlo(runs: SweepRun[]): GridCapacity {
  const sorted = [...runs].sort((a, b) => a.sweep.offeredLoad - b.sweep.offeredLoad);
  if (sorted.length === 0 || !meetsSlo(sorted[0])) {
    return { load: sorted[0]?.sweep.offeredLoad ?? 0, bound: "below" };
  }
  for (let i = 1; i < sorted.length; i++) {
    if (meetsSlo(sorted[i])) continue;
    const [a, b] = [sorted[i - 1], sorted[i]];
    const slo = a.sweep.sloMs;
    const overloaded = b.sweep.overloaded.length > 0;
    const share = overloaded || b.latencyMs.p99 <= a.latencyMs.p99
      ? 0
      : Math.log(slo / a.latencyMs.p99) / Math.log(b.latencyMs.p99 / a.latencyMs.p99);
    const load = a.sweep.offeredLoad + share * (b.sweep.offeredLoad - a.sweep.offeredLoad);
    return { load: Math.round(load * 100) / 100, bound: "within" };
  }
  return { load: sorted[sorted.length - 1].sweep.offeredLoad, bound: "above" };
}

/** `0.62`, `< 0.5`, `≥ 0.95`. */
export function formatCapacity(c: GridCapacity): string {
  if (c.bound === "below") return `< ${c.load}`;
  if (c.bound === "above") return `≥ ${c.load}`;
  return c.load.toFixed(2);
}

/** A ratio to round robin's, or why there is none. */
function ratio(value: number, of: number | undefined): string {
  if (of === undefined) return "";
  if (of === 0) return value === 0 ? "–" : "RR never meets it";
  return `${(value / of).toFixed(2)}×`;
}

function policiesOf(runs: SweepRun[]): string[] {
  return [...new Set(runs.map((r) => r.policy))];
}

function loadsOf(runs: SweepRun[]): number[] {
  return [...new Set(runs.map((r) => r.sweep.offeredLoad))].sort((a, b) => a - b);
}

function percent(load: number): string {
  return `${Math.round(load * 100)} %`;
}

function ms(value: number): string {
  return value >= 1_000 ? Math.round(value).toLocaleString("en-US") : String(Math.round(value));
}

/**
 * p99 by policy and offered load: the real run's, then the simulator's for the same point; a run
 * where a server's queue grew without bound says so (its p99 measures the run's length); the last
 * row is the oracle's bound.
 */
export function p99Table(runs: SweepRun[]): string[] {
  const loads = loadsOf(runs);
  const rows = [
    `| policy | ${loads.map((l) => `p99 at ${percent(l)}: real / sim`).join(" | ")} |`,
    `| --- | ${loads.map(() => "---:").join(" | ")} |`,
  ];
  for (const policy of policiesOf(runs)) {
    const cells = loads.map((load) => {
      const r = runs.find((r) => r.policy === policy && r.sweep.offeredLoad === load);
      if (!r) return "";
      const sim = r.sweep.sim.overloaded ? "overloads" : ms(r.sweep.sim.p99Ms);
      if (r.sweep.overloaded.length) {
        return `**overloaded** (${r.sweep.overloaded.join(", ")}) / ${sim}`;
      }
      return `${ms(r.latencyMs.p99)} / ${sim}`;
    });
    rows.push(`| ${policy} | ${cells.join(" | ")} |`);
  }
  const oracle = loads.map((load) => {
    const r = runs.find((r) => r.sweep.offeredLoad === load)!;
    return `${ms(r.sweep.oracle.p99Ms)} (sim)`;
  });
  rows.push(`| **oracle** (the bound) | ${oracle.join(" | ")} |`);
  return rows;
}

/**
 * Capacity at SLO per policy: from the real runs (read off the swept loads) and from the
 * simulator (searched to 1 %), each as a ratio to round robin's, and the oracle's.
 */
export function capacityTable(runs: SweepRun[]): string[] {
  const policies = policiesOf(runs);
  const grid = new Map(
    policies.map((p) => [p, gridCapacityAtSlo(runs.filter((r) => r.policy === p))]),
  );
  const sim = new Map(policies.map((p) => [p, runs.find((r) => r.policy === p)!.sweep]));
  const rr = grid.get("round_robin");
  const rrSim = sim.get("round_robin")?.simCapacityAtSlo;
  const rows = [
    "| policy | real | ×RR real | simulated | ×RR simulated | ×oracle simulated |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const policy of policies) {
    const g = grid.get(policy)!;
    const s = sim.get(policy)!;
    const realRatio = g.bound === "within" && rr?.bound === "within"
      ? ratio(g.load, rr.load)
      : rr === undefined
      ? ""
      : rr.bound === "below" && g.bound !== "below"
      ? "RR below the swept loads"
      : "";
    rows.push(
      `| ${policy} | ${formatCapacity(g)} | ${realRatio} | ${s.simCapacityAtSlo.toFixed(2)} | ${
        ratio(s.simCapacityAtSlo, rrSim)
      } | ${ratio(s.simCapacityAtSlo, s.oracleCapacityAtSlo)} |`,
    );
  }
  const oracle = runs[0]?.sweep.oracleCapacityAtSlo ?? 0;
  rows.push(`| **oracle** | | | ${oracle.toFixed(2)} | ${ratio(oracle, rrSim)} | 1.00× |`);
  return rows;
}

/** Every run of the sweep in full: counts, latency, each server's share. */
export function detailTable(runs: SweepRun[]): string[] {
  const rows = [
    "| policy | load | offered/s | completed | failed | done/s | p50 ms | p99 ms | max ms | sim p50 / p99 | share per server (real / sim) |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
  ];
  for (const r of [...runs].sort((a, b) => a.sweep.offeredLoad - b.sweep.offeredLoad)) {
    const total = r.servers.reduce((n, s) => n + s.requests, 0);
    const shares = r.servers.map((s, i) =>
      `${s.label.split(" ")[0]} ${total ? Math.round((100 * s.requests) / total) : 0}/${
        Math.round(100 * (r.sweep.sim.shares[i] ?? 0))
      }`
    ).join(", ");
    rows.push(
      `| ${r.policy} | ${percent(r.sweep.offeredLoad)} | ${
        r.sweep.rate.toFixed(0)
      } | ${r.completed} | ${r.failed} | ${
        r.throughput.toFixed(1)
      } | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.latencyMs.max} | ${r.sweep.sim.p50Ms} / ${r.sweep.sim.p99Ms} | ${shares} |`,
    );
  }
  return rows;
}

/** The report section of one sweep scenario. */
export function sweepSection(
  scenario: ScenarioName,
  description: string,
  runs: RunResult[],
  charts: Chart[],
): string[] {
  const sweep = sweepRuns(scenario, runs);
  const first = sweep[0];
  if (!first) return [`## ${scenario}`, "", `${description}.`, ""];
  const chart = (suffix: string) => {
    const c = charts.find((c) => c.file === `${scenario}-${suffix}.svg`);
    return c ? [`![${c.title}](${c.file})`, ""] : [];
  };
  return [
    `## ${scenario}`,
    "",
    `${description}. One worker slot per backend, service time ${
      first.sweep.sloMs / 5
    } ms mean at capacity 1; open-loop Poisson load from ${
      first.mode === "watch" ? "watch-mode" : "lookaside"
    } clients, ${first.sweep.loadS} s of arrivals per run; latency counts from each task's scheduled arrival. ` +
    `Simulated figures: \`deno task simulate\` on the same pool, policy and load (seed 1). ` +
    `SLO: p99 within ${first.sweep.sloMs} ms (5× the mean service time at capacity 1).`,
    "",
    ...p99Table(sweep),
    "",
    ...chart("p99-load"),
    "Capacity at SLO: the highest offered load (share of the pool's capacity) whose p99 stays " +
    "within the SLO with no queue growing without bound.",
    "",
    ...capacityTable(sweep),
    "",
    ...chart("capacity-at-slo"),
    ...chart("share-over-time"),
    "<details><summary>Every run</summary>",
    "",
    ...detailTable(sweep),
    "",
    "</details>",
    "",
  ];
}

/** The charts of one sweep scenario. */
export async function sweepCharts(scenario: ScenarioName, runs: RunResult[]): Promise<Chart[]> {
  const sweep = sweepRuns(scenario, runs);
  if (sweep.length === 0) return [];
  const charts = [await p99Chart(scenario, sweep), await capacityChart(scenario, sweep)];
  const share = await shareChart(scenario, sweep);
  if (share) charts.push(share);
  return charts;
}

async function p99Chart(scenario: ScenarioName, runs: SweepRun[]): Promise<Chart> {
  const values: { policy: string; load: number; p99: number; state: string }[] = runs.map((r) => ({
    policy: r.policy,
    load: Math.round(r.sweep.offeredLoad * 100),
    p99: Math.max(1, r.latencyMs.p99),
    state: r.sweep.overloaded.length ? "overloaded" : "steady",
  }));
  for (const load of loadsOf(runs)) {
    const r = runs.find((r) => r.sweep.offeredLoad === load)!;
    values.push({
      policy: "oracle (simulated)",
      load: Math.round(load * 100),
      p99: r.sweep.oracle.p99Ms,
      state: "steady",
    });
  }
  const slo = runs[0].sweep.sloMs;
  const title = `${scenario}: p99 against offered load (log scale; dashed: SLO ${slo} ms)`;
  return {
    file: `${scenario}-p99-load.svg`,
    title,
    svg: await renderSvg({
      $schema: VEGA_LITE_SCHEMA,
      title,
      width: 420,
      height: 260,
      background: "white",
      layer: [
        {
          data: { values },
          mark: { type: "line", point: { filled: true, size: 50 } },
          encoding: {
            x: { field: "load", type: "quantitative", title: "offered load (% of capacity)" },
            y: {
              field: "p99",
              type: "quantitative",
              scale: { type: "log" },
              title: "p99 latency (ms)",
            },
            color: { field: "policy", type: "nominal", title: null },
            strokeDash: {
              condition: { test: "datum.policy === 'oracle (simulated)'", value: [6, 3] },
              value: [1, 0],
            },
            shape: { field: "state", type: "nominal", title: "queue" },
          },
        },
        {
          data: { values: [{ slo }] },
          mark: { type: "rule", strokeDash: [2, 2], color: "#888" },
          encoding: { y: { field: "slo", type: "quantitative" } },
        },
      ],
    }),
  };
}

async function capacityChart(scenario: ScenarioName, runs: SweepRun[]): Promise<Chart> {
  const values: Record<string, unknown>[] = [];
  for (const policy of policiesOf(runs)) {
    const own = runs.filter((r) => r.policy === policy);
    const grid = gridCapacityAtSlo(own);
    values.push(
      {
        policy,
        source: "real (swept loads; 0 if below them)",
        load: grid.bound === "below" ? 0 : Math.round(grid.load * 100),
      },
      { policy, source: "simulated", load: Math.round(own[0].sweep.simCapacityAtSlo * 100) },
    );
  }
  values.push({
    policy: "oracle",
    source: "simulated",
    load: Math.round(runs[0].sweep.oracleCapacityAtSlo * 100),
  });
  const title = `${scenario}: capacity at SLO (p99 within ${runs[0].sweep.sloMs} ms)`;
  return {
    file: `${scenario}-capacity-at-slo.svg`,
    title,
    svg: await renderSvg({
      $schema: VEGA_LITE_SCHEMA,
      title,
      width: 420,
      height: 220,
      background: "white",
      data: { values },
      mark: "bar",
      encoding: {
        x: {
          field: "policy",
          type: "nominal",
          sort: [...policiesOf(runs), "oracle"],
          title: null,
          axis: { labelAngle: -30 },
        },
        xOffset: { field: "source" },
        y: {
          field: "load",
          type: "quantitative",
          title: "highest load within the SLO (% of capacity)",
          scale: { domain: [0, 100] },
        },
        color: { field: "source", type: "nominal", title: null },
      },
    }),
  };
}

/**
 * Where a server's capacity changes during each run: its share of the tasks completed each
 * second, per policy, at the swept load nearest 70 %, with the window of the change shaded.
 */
async function shareChart(scenario: ScenarioName, runs: SweepRun[]): Promise<Chart | undefined> {
  const changed = runs.filter((r) => r.sweep.capacityChanges.length >= 2);
  if (changed.length === 0) return undefined;
  const loads = loadsOf(changed);
  const load = loads.reduce((best, l) => Math.abs(l - 0.7) < Math.abs(best - 0.7) ? l : best);
  const atLoad = changed.filter((r) => r.sweep.offeredLoad === load);
  const server = atLoad[0].sweep.capacityChanges[0].server;
  const values = atLoad.flatMap((r) =>
    // The arrivals' window only: an overloaded run's backlog drains long after it.
    r.timeline.filter((point) => point.atS <= r.sweep.loadS).map((point) => {
      const total = Object.values(point.completed).reduce((a, b) => a + b, 0);
      return {
        policy: r.policy,
        second: point.atS,
        share: total ? Math.round((1_000 * (point.completed[server] ?? 0)) / total) / 10 : 0,
      };
    })
  );
  const [from, to] = atLoad[0].sweep.capacityChanges;
  const fair = 100 / atLoad[0].sweep.capacities.length;
  const title = `${scenario}: ${server}'s share of the tasks completed each second at ${
    percent(load)
  } load (shaded: capacity ${from.capacity})`;
  return {
    file: `${scenario}-share-over-time.svg`,
    title,
    svg: await renderSvg({
      $schema: VEGA_LITE_SCHEMA,
      title,
      width: 460,
      height: 240,
      background: "white",
      layer: [
        {
          data: { values: [{ from: from.atS, to: to.atS }] },
          mark: { type: "rect", color: "#eee" },
          encoding: {
            x: { field: "from", type: "quantitative" },
            x2: { field: "to" },
          },
        },
        {
          data: { values: [{ fair }] },
          mark: { type: "rule", strokeDash: [2, 2], color: "#888" },
          encoding: { y: { field: "fair", type: "quantitative" } },
        },
        {
          data: { values },
          mark: { type: "line", point: true },
          encoding: {
            x: { field: "second", type: "quantitative", title: "second of the run" },
            y: { field: "share", type: "quantitative", title: `${server}'s share (%)` },
            color: { field: "policy", type: "nominal", title: null },
          },
        },
      ],
    }),
  };
}
