/**
 * The simulator's output: one JSON object (the run's settings and what it measured), or a few
 * lines of text. A run where a server's queue grew without bound says so, since its latency then
 * measures the run's length rather than the policy.
 *
 * @module
 */
import type { SimOptions, SimResult } from "./simulator.ts";

/** The settings of a run as printed: its options, with the service time as given. */
export type SimSettings = Omit<SimOptions, "service"> & { service: string };

/** The run as one JSON object (times in ms, rounded to the microsecond). */
export function simJson(settings: SimSettings, result: SimResult): string {
  return JSON.stringify(
    { settings, ...result },
    (_key, value) =>
      typeof value === "number" && !Number.isInteger(value) ? Math.round(value * 1e3) / 1e3 : value,
  );
}

/** The run as text: the settings, the latency line, and a row per server. */
export function simText(settings: SimSettings, result: SimResult): string {
  const s = settings;
  const l = result.latencyMs;
  const overloaded = result.servers.flatMap((server, i) => server.overloaded ? [i] : []);
  const ms = (v: number) => v.toFixed(v < 10 ? 2 : 1);
  const lines = [
    `${s.requests} requests of ${s.service} at ${Math.round(s.load * 1_000) / 10}% of capacity ` +
    `on ${s.capacities.length} servers (${s.slots} slot${s.slots === 1 ? "" : "s"} each), ` +
    `${s.policy}, ${s.mode}, ${s.balancers} balancer${s.balancers === 1 ? "" : "s"}, ` +
    `${s.clients} client${s.clients === 1 ? "" : "s"}, reports every ${s.reportIntervalMs} ms, ` +
    `seed ${s.seed}${s.steadyStart ? ", steady start" : ""}: ` +
    `${result.simulatedS.toFixed(1)} s simulated`,
    `latency ms (${result.measured} measured): mean ${ms(l.mean)}  p50 ${ms(l.p50)}  ` +
    `p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  p99.9 ${ms(l.p999)}`,
  ];
  const scheduled = (s.schedules ?? []).flatMap((schedule, i) =>
    schedule
      ? [`server ${i} ${schedule.map((p) => `${p.atMs / 1_000}s:${p.capacity}`).join(",")}`]
      : []
  );
  if (scheduled.length) lines.push(`capacity schedules: ${scheduled.join("; ")}`);
  if (overloaded.length) {
    lines.push(
      `OVERLOADED: server${overloaded.length === 1 ? "" : "s"} ${overloaded.join(", ")} ` +
        "(queue still growing at the end): the latency above measures the run's length",
    );
  }
  lines.push("server  capacity  share   utilization");
  result.servers.forEach((server, i) => {
    lines.push(
      `${String(i).padEnd(8)}${String(server.capacity).padEnd(10)}` +
        `${(server.share * 100).toFixed(1).padStart(5)}%  ${
          (server.utilization * 100).toFixed(1).padStart(10)
        }%${server.overloaded ? "  overloaded" : ""}`,
    );
  });
  return lines.join("\n");
}
