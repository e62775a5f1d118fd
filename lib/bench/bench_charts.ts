/**
 * The benchmark's charts: Vega-Lite specifications compiled with `vega-lite` and rendered to SVG
 * by `vega` without a browser.
 *
 * @module
 */
import * as vega from "vega";
import * as vl from "vega-lite";
import type { RunResult } from "./bench_results.ts";
import type { ScaleFigures } from "./bench_scale.ts";
import type { ScenarioName } from "./bench_scenarios.ts";

/** One chart: its file name and SVG text. */
export interface Chart {
  file: string;
  title: string;
  svg: string;
}

/** The Vega-Lite schema every chart names. */
export const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

const WIDTH = 420;
const HEIGHT = 220;

/** Renders a Vega-Lite specification to SVG. */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

function base(title: string, values: Record<string, unknown>[]) {
  return {
    $schema: VEGA_LITE_SCHEMA,
    title,
    width: WIDTH,
    height: HEIGHT,
    background: "white",
    config: { axisX: { labelAngle: 0 } },
    data: { values },
  } as const;
}

/** The charts of one scenario: requests per server, latency, throughput. */
export async function scenarioCharts(
  scenario: ScenarioName,
  runs: RunResult[],
): Promise<Chart[]> {
  const tasks = runs.filter((r) => r.scenario === scenario && r.kind === "tasks");
  const targets = tasks.map((r) => r.target);
  const perServer = tasks.flatMap((r) =>
    r.servers.map((s) => ({ target: r.target, server: s.label, requests: s.requests }))
  );
  const latency = tasks.flatMap((r) => [
    { target: r.target, percentile: "p50", ms: r.latencyMs.p50 },
    { target: r.target, percentile: "p99", ms: r.latencyMs.p99 },
  ]);
  const throughput = tasks.map((r) => ({ target: r.target, throughput: r.throughput }));
  const x = { field: "target", type: "nominal", sort: targets, title: null } as const;
  const ramp = await rampChart(scenario, tasks);
  const herd = await herdChart(scenario, tasks);
  return [
    ...(ramp ? [ramp] : []),
    ...(herd ? [herd] : []),
    {
      file: `${scenario}-servers.svg`,
      title: `${scenario}: requests per server`,
      svg: await renderSvg({
        ...base(`${scenario}: requests per server`, perServer),
        mark: "bar",
        encoding: {
          x,
          xOffset: { field: "server" },
          y: { field: "requests", type: "quantitative", title: "requests completed" },
          color: { field: "server", type: "nominal", title: "server" },
        },
      }),
    },
    {
      file: `${scenario}-latency.svg`,
      title: `${scenario}: latency p50 and p99`,
      svg: await renderSvg({
        ...base(`${scenario}: latency p50 and p99 (ms)`, latency),
        mark: "bar",
        encoding: {
          x,
          xOffset: { field: "percentile" },
          y: { field: "ms", type: "quantitative", title: "latency (ms)" },
          color: { field: "percentile", type: "nominal", title: null },
        },
      }),
    },
    {
      file: `${scenario}-throughput.svg`,
      title: `${scenario}: throughput`,
      svg: await renderSvg({
        ...base(`${scenario}: throughput (completed/s)`, throughput),
        mark: "bar",
        encoding: {
          x,
          y: { field: "throughput", type: "quantitative", title: "completed per second" },
          color: { value: "#4c78a8" },
        },
      }),
    },
  ];
}

/**
 * For runs with tasks in flight sampled: the largest server's share of them, per target (even
 * over 3 servers is 33 %; herding piles them on one).
 */
async function herdChart(scenario: ScenarioName, runs: RunResult[]): Promise<Chart | undefined> {
  const values = runs.filter((r) => r.inFlightTopShare !== undefined).map((r) => ({
    target: r.target,
    share: Math.round(1_000 * r.inFlightTopShare!) / 10,
  }));
  if (values.length === 0 || scenario !== "replicas") return undefined;
  const title = `${scenario}: largest server's share of the tasks in flight`;
  return {
    file: `${scenario}-in-flight.svg`,
    title,
    svg: await renderSvg({
      ...base(`${title} (%, mean)`, values),
      mark: "bar",
      // Bars across: the targets' long names stay readable.
      encoding: {
        y: {
          field: "target",
          type: "nominal",
          sort: values.map((v) => v.target),
          title: null,
          axis: { labelLimit: 400 },
        },
        x: { field: "share", type: "quantitative", title: "% of the tasks in flight" },
        color: { value: "#4c78a8" },
      },
    }),
  };
}

/**
 * For runs where a server joined: its share of the completed tasks second by second, and the
 * clients' p99 in each second, per target (a slow start ramps the share without a p99 spike).
 */
async function rampChart(scenario: ScenarioName, runs: RunResult[]): Promise<Chart | undefined> {
  // Lookaside only: a line per policy stays readable (watch mode ramps the same way).
  const joined = runs.filter((r) =>
    r.mode === "lookaside" && r.policy !== "direct" &&
    r.servers.some((s) => s.label.endsWith("(joined)"))
  );
  if (joined.length === 0 || scenario !== "slow_start") return undefined;
  const values = joined.flatMap((r) => {
    const label = r.servers.find((s) => s.label.endsWith("(joined)"))!.label;
    return r.timeline.flatMap((point) => {
      const total = Object.values(point.completed).reduce((a, b) => a + b, 0);
      return [
        {
          target: r.target,
          second: point.atS,
          panel: "joined server's share of tasks (%)",
          value: total ? (100 * (point.completed[label] ?? 0)) / total : 0,
        },
        { target: r.target, second: point.atS, panel: "p99 latency (ms)", value: point.p99Ms },
      ];
    });
  });
  const title = `${scenario}: a server joins at ${
    joined[0].events[0]?.atS ?? "?"
  } s (lookaside mode)`;
  return {
    file: `${scenario}-ramp.svg`,
    title,
    svg: await renderSvg({
      $schema: VEGA_LITE_SCHEMA,
      title,
      background: "white",
      data: { values },
      facet: { row: { field: "panel", type: "nominal", title: null } },
      resolve: { scale: { y: "independent" } },
      spec: {
        width: WIDTH,
        height: 160,
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "second", type: "quantitative", title: "second of the run" },
          y: { field: "value", type: "quantitative", title: null },
          color: { field: "target", type: "nominal", title: null },
        },
      },
    }),
  };
}

/** 150 MB, the scale target for the balancer's memory, in MiB. */
const MEMORY_TARGET_MIB = 150e6 / 2 ** 20;

/**
 * The `scale` scenario's balancer memory, sampled once a second while it checks every server:
 * resident and V8 heap used, against the 150 MB target.
 */
export async function scaleMemoryChart(scale: ScaleFigures): Promise<Chart> {
  const values = [
    ...scale.rssSamplesMiB.map((mib, s) => ({ s, mib, what: "resident" })),
    ...scale.heapSamplesMiB.map((mib, s) => ({ s, mib, what: "V8 heap used" })),
  ];
  const title = `scale: balancer memory with ${scale.backends} servers, once a second`;
  return {
    file: "scale-memory.svg",
    title,
    svg: await renderSvg({
      ...base(title, values),
      layer: [
        {
          mark: "line",
          encoding: {
            x: { field: "s", type: "quantitative", title: "seconds into the churn" },
            y: { field: "mib", type: "quantitative", title: "MiB" },
            color: { field: "what", type: "nominal", title: null },
          },
        },
        {
          data: { values: [{ mib: MEMORY_TARGET_MIB }] },
          mark: { type: "rule", strokeDash: [4, 4], color: "firebrick" },
          encoding: { y: { field: "mib", type: "quantitative" } },
        },
        {
          data: { values: [{ mib: MEMORY_TARGET_MIB, label: "150 MB target" }] },
          mark: { type: "text", align: "left", dx: 4, dy: -6, color: "firebrick" },
          encoding: {
            y: { field: "mib", type: "quantitative" },
            x: { datum: 0 },
            text: { field: "label" },
          },
        },
      ],
    }),
  };
}

/** Balancer `GetServer` throughput per policy against the `echo` ceiling. */
export async function lookupChart(runs: RunResult[]): Promise<Chart | undefined> {
  const lookups = runs.filter((r) => r.kind === "lookups");
  if (lookups.length === 0) return undefined;
  const values = lookups.map((r) => ({
    target: r.target === "echo" ? "echo (ceiling)" : r.target,
    throughput: r.throughput,
    kind: r.target === "echo" ? "baseline" : "balancer",
  }));
  return {
    file: "balancer-throughput.svg",
    title: "Balancer GetServer throughput against the echo ceiling",
    svg: await renderSvg({
      ...base("GetServer per second: balancer policies vs a bare echo server", values),
      mark: "bar",
      encoding: {
        x: { field: "target", type: "nominal", sort: values.map((v) => v.target), title: null },
        y: { field: "throughput", type: "quantitative", title: "GetServer per second" },
        color: { field: "kind", type: "nominal", title: null },
      },
    }),
  };
}
