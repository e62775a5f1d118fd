/**
 * Load harness for fault tests: a {@linkcode TaskClient} that records every outcome, and a load
 * that runs until stopped, so it covers a fault however long it lasts.
 *
 * @module
 */
import { type LoadRunOptions, runLoad } from "../lib/client/load_run.ts";
import { TaskClient, type TaskOutcome } from "../lib/client/task_client.ts";
import { waitFor } from "../lib/harness/wait.ts";
import type { Started } from "./_system.ts";

/** A TaskClient that also records when each task ended and how. */
export class TimedClient extends TaskClient {
  readonly outcomes: { atMs: number; ok: boolean; server: string | undefined }[] = [];
  /** Failures by message. */
  readonly failures: Record<string, number> = {};

  override async run(taskId: string, taskType: string): Promise<TaskOutcome> {
    const outcome = await super.run(taskId, taskType);
    this.outcomes.push({ atMs: performance.now(), ok: outcome.ok, server: outcome.server });
    if (!outcome.ok) this.failures[outcome.message] = (this.failures[outcome.message] ?? 0) + 1;
    return outcome;
  }
}

/** What a load saw over all its rounds. */
export interface LoadTotals {
  requests: number;
  failed: number;
  retried: number;
  failuresByCode: Record<string, number>;
  perServer: Record<string, number>;
  maxLatencyMs: number;
}

/** A load running until {@linkcode stop}. */
export interface Load {
  stop(): Promise<LoadTotals>;
}

/** Runs `runLoad` in rounds of `ROUND_MS` until stopped, so a load covers a fault however long. */
const ROUND_MS = 1_000;

export function startLoad(options: Omit<LoadRunOptions, "durationMs" | "requests">): Load {
  let stopping = false;
  const totals: LoadTotals = {
    requests: 0,
    failed: 0,
    retried: 0,
    failuresByCode: {},
    perServer: {},
    maxLatencyMs: 0,
  };
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
  };
  const running = (async () => {
    while (!stopping) {
      const s = await runLoad({ ...options, durationMs: ROUND_MS });
      totals.requests += s.requests;
      totals.failed += s.failed;
      totals.retried += s.retried;
      totals.maxLatencyMs = Math.max(totals.maxLatencyMs, s.latencyMs.max);
      add(totals.failuresByCode, s.failuresByCode);
      add(totals.perServer, s.perServer);
    }
    return totals;
  })();
  return {
    stop: () => {
      stopping = true;
      return running;
    },
  };
}

/** One line of figures: requests, failures by code, retries, worst latency. */
export function describe(totals: LoadTotals): string {
  const codes = Object.entries(totals.failuresByCode).map(([k, v]) => `${k} ${v}`).join(", ");
  return `${totals.requests} requests, ${totals.failed} failed${codes ? ` (${codes})` : ""}, ` +
    `${totals.retried} retried, max latency ${totals.maxLatencyMs.toFixed(0)} ms`;
}

/** Waits until `client` has finished 20 tasks on `backend`: the load has reached it. */
export function loadReaches(client: TimedClient, backend: Started): Promise<unknown> {
  return waitFor(`the load to reach ${backend.address}`, () => {
    return client.outcomes.filter((o) => o.server === backend.address).length >= 20;
  }, 15_000);
}
