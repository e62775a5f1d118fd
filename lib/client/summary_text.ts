/**
 * Plain-text rendering of load-run summaries: the client's summary and the demo's table.
 *
 * @module
 */
import type { LoadRunSummary } from "./load_run.ts";

/** Renders rows as an aligned text table; the first row is the header. */
export function textTable(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join("  ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)]
    .join("\n");
}

/**
 * The client's human-readable summary; when tasks failed, it ends with a `failures` section,
 * one line a cause: `  UNAVAILABLE ×30 from 127.0.0.1:50052: No connection established. ...`.
 */
export function formatSummary(summary: LoadRunSummary): string {
  const l = summary.latencyMs;
  const failures = Object.entries(summary.failuresByCode).map(([code, n]) => `${code} ${n}`);
  const servers = Object.entries(summary.perServer).sort(([a], [b]) => a.localeCompare(b));
  return [
    `requests    ${summary.requests} (${summary.succeeded} ok, ${summary.failed} failed${
      failures.length ? `: ${failures.join(", ")}` : ""
    }; ${summary.retried} retried)`,
    `duration    ${summary.durationS.toFixed(2)} s`,
    `throughput  ${summary.throughput.toFixed(1)} req/s`,
    `latency ms  p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}`,
    "per server",
    ...servers.map(([address, n]) =>
      `  ${address.padEnd(24)} ${String(n).padStart(7)}  ${percent(n, summary.succeeded)}`
    ),
    ...formatFailures(summary),
  ].join("\n");
}

/** The `failures` section: each cause with its count and server, then the other failures. */
function formatFailures(summary: LoadRunSummary): string[] {
  const { failureCauses, otherFailures } = summary;
  if (failureCauses.length === 0 && otherFailures === 0) return [];
  return [
    "failures",
    ...failureCauses.map((c) =>
      `  ${c.code} ×${c.count}${c.server ? ` from ${c.server}` : ""}: ${c.message}`
    ),
    ...(otherFailures > 0 ? [`  other causes ×${otherFailures}`] : []),
  ];
}

/** `n` as a share of `total`, e.g. `33.3%`. */
export function percent(n: number, total: number): string {
  return total === 0 ? "0.0%" : `${((100 * n) / total).toFixed(1)}%`;
}
