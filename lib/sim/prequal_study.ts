/**
 * `deno task simulate:prequal`: issue 17's pool in the simulator. `prequal` beside the classic
 * policies and the oracle on eight servers of capacities 1,1,1,1,0.5,0.5,0.25,0.25 (and eight equal
 * ones), what each of its parameters is worth, and how fast a noisy
 * neighbour's share moves. Writes `docs/sim/prequal.md` and `docs/sim/prequal.json`;
 * `docs/prequal.md` reads them. Deterministic: the same code gives the same figures.
 *
 * @module
 */
import { prequal, type PrequalOptions } from "../../policies/prequal.ts";
import type { CapacitySchedule } from "../backend/capacity_schedule.ts";
import { type SimOptions, type SimResult, simulate } from "./simulator.ts";

/** The issue's pool. */
const MIX = [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25];
const EQUAL = [1, 1, 1, 1, 1, 1, 1, 1];
const NOISY_FROM_S = 40;
const NOISY_TO_S = 80;
const NOISY: CapacitySchedule = [
  { atMs: 0, capacity: 1 },
  { atMs: NOISY_FROM_S * 1_000, capacity: 0.2 },
  { atMs: NOISY_TO_S * 1_000, capacity: 1 },
];

const BASE: SimOptions = {
  capacities: MIX,
  service: { kind: "exp", meanMs: 20 },
  slots: 1,
  load: 0.85,
  policy: "round_robin",
  requests: 60_000,
  warmup: 0.1,
  clients: 10,
  mode: "lookaside",
  balancers: 1,
  reportIntervalMs: 1_000,
  seed: 1,
  steadyStart: true,
};

interface Scenario {
  name: string;
  options: Partial<SimOptions>;
}

const SCENARIOS: Scenario[] = [
  { name: "capacity mix, 85 %", options: {} },
  {
    name: "capacity mix, 85 %, 10 balancers, 200 clients",
    options: { balancers: 10, clients: 200 },
  },
  {
    name: "capacity mix, 85 %, watch, 200 clients",
    options: { balancers: 10, clients: 200, mode: "watch" },
  },
  { name: "equal servers, 90 %", options: { capacities: EQUAL, load: 0.9 } },
  {
    name: `noisy neighbour, 70 % (server 1 at 0.2 from ${NOISY_FROM_S} to ${NOISY_TO_S} s)`,
    options: { capacities: EQUAL, load: 0.7, requests: 40_000, schedules: [NOISY] },
  },
];

const CLASSIC = ["round_robin", "weighted_round_robin", "least_load", "power_of_two"];
const POLICIES = [...CLASSIC, "prequal", "oracle"];

const VARIANTS: { name: string; options: PrequalOptions }[] = [
  { name: "defaults", options: {} },
  { name: "1 probe per pick", options: { probesPerPick: 1 } },
  { name: "3 probes per pick", options: { probesPerPick: 3 } },
  { name: "no reuse (1 use)", options: { reuse: 1 } },
  { name: "reuse 10", options: { reuse: 10 } },
  { name: "hot above the 0.5 quantile", options: { hotQuantile: 0.5 } },
  { name: "hot above the 0.8 quantile", options: { hotQuantile: 0.8 } },
  { name: "nothing hot (quantile 1)", options: { hotQuantile: 1 } },
  { name: "no worst dropped", options: { removeWorstPerPick: 0 } },
  { name: "worst dropped every pick", options: { removeWorstPerPick: 1 } },
  { name: "pool of 4", options: { poolSize: 4 } },
  { name: "answers kept 250 ms", options: { maxAgeMs: 250 } },
];

function run(options: Partial<SimOptions>, factory?: () => ReturnType<typeof prequal>): SimResult {
  return simulate({ ...BASE, ...options, ...(factory ? { policyFactory: factory } : {}) });
}

const f0 = (x: number) => Number.isFinite(x) ? Math.round(x).toLocaleString("en") : "–";
const f2 = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "–";
/** A p99, or "overload" when a queue grew without bound. */
const p99Of = (r: SimResult) => r.servers.some((s) => s.overloaded) ? Infinity : r.latencyMs.p99;
const cell = (x: number) => x === Infinity ? "overload" : f0(x);

const out: string[] = [];
const json: Record<string, unknown> = { command: "deno task simulate:prequal", base: BASE };
const progress = (what: string) => console.error(`simulate:prequal: ${what}`);

out.push(
  "# prequal in the simulator",
  "",
  "Written by `deno task simulate:prequal` (`lib/sim/prequal_study.ts`); deterministic. Eight",
  "servers, one slot each, exponential service of 20 ms mean at capacity 1, open-loop Poisson",
  `arrivals; ${BASE.requests.toLocaleString("en")} requests a run (the first 10 % left out), load`,
  "reports every 1 s, probes back after 1 ms. p99 in ms; overload: a queue grew without bound.",
  "",
  "## Beside the classic policies and the oracle",
  "",
  `| scenario | ${
    POLICIES.join(" | ")
  } | prequal ÷ WRR | prequal ÷ oracle | prequal ÷ best classic | probes per request |`,
  `| --- | ${POLICIES.map(() => "---:").join(" | ")} | ---: | ---: | ---: | ---: |`,
);
const table: Record<string, Record<string, number>> = {};
for (const scenario of SCENARIOS) {
  progress(scenario.name);
  const p99: Record<string, number> = {};
  let probes = 0;
  for (const policy of POLICIES) {
    const r = run({ ...scenario.options, policy });
    p99[policy] = p99Of(r);
    if (policy === "prequal") probes = r.probesPerRequest;
  }
  table[scenario.name] = p99;
  const best = Math.min(...CLASSIC.map((p) => p99[p]));
  out.push(
    `| ${scenario.name} | ${POLICIES.map((p) => cell(p99[p])).join(" | ")} | ${
      f2(p99.prequal / p99.weighted_round_robin)
    } | ${f2(p99.prequal / p99.oracle)} | ${f2(p99.prequal / best)} | ${f2(probes)} |`,
  );
}
json.p99 = table;

// What each parameter is worth.
progress("parameters");
const variantScenarios = SCENARIOS.slice(0, 4);
out.push(
  "",
  "## What each parameter is worth",
  "",
  "p99 of `prequal` with one option changed from its defaults.",
  "",
  `| variant | ${variantScenarios.map((s) => s.name).join(" | ")} |`,
  `| --- | ${variantScenarios.map(() => "---:").join(" | ")} |`,
);
const variants: Record<string, number[]> = {};
for (const variant of VARIANTS) {
  const figures = variantScenarios.map((s) =>
    p99Of(run({ ...s.options, policy: "prequal" }, () => prequal(variant.options)))
  );
  variants[variant.name] = figures;
  out.push(`| ${variant.name} | ${figures.map(cell).join(" | ")} |`);
}
json.variants = variants;

// The noisy neighbour, second by second.
progress("noisy neighbour timeline");
const noisy = SCENARIOS[4].options;
const seconds = [
  ...Array.from({ length: 6 }, (_, i) => NOISY_FROM_S - 2 + i),
  ...Array.from({ length: 6 }, (_, i) => NOISY_TO_S - 2 + i),
];
out.push(
  "",
  "## The noisy neighbour, second by second",
  "",
  `Server 1's share of the completions in each simulated second around its slowdown (at ${NOISY_FROM_S} s)`,
  `and its end (at ${NOISY_TO_S} s); 12.5 % is an equal share, 2.5 % its share at capacity 0.2.`,
  "",
  `| policy | ${seconds.map((s) => `${s} s`).join(" | ")} |`,
  `| --- | ${seconds.map(() => "---:").join(" | ")} |`,
);
const timelines: Record<string, number[]> = {};
for (const policy of ["weighted_round_robin", "least_load", "prequal", "oracle"]) {
  const r = run({ ...noisy, policy, timeline: true });
  const share = seconds.map((s) => {
    const row = r.timeline?.[s] ?? [];
    const total = row.reduce((a, b) => a + b, 0);
    return total > 0 ? row[0] / total : NaN;
  });
  timelines[policy] = share;
  out.push(`| ${policy} | ${share.map((x) => `${(100 * x).toFixed(1)} %`).join(" | ")} |`);
}
json.noisyShare = { seconds, share: timelines };

await Deno.writeTextFile("docs/sim/prequal.md", out.join("\n") + "\n");
await Deno.writeTextFile("docs/sim/prequal.json", JSON.stringify(json, null, 2) + "\n");
progress("wrote docs/sim/prequal.md and docs/sim/prequal.json");
