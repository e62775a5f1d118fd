/**
 * A deterministic discrete-event simulation of clients, balancers and servers that runs the real
 * policies of `policies/`. Servers have `slots` workers and a FIFO queue each; a request holds a
 * slot for a service time drawn from the `--service-time` distribution and stretched by 1 / F for
 * a server of capacity F. Requests arrive open-loop (Poisson) at a share of the pool's capacity,
 * from `clients` client ids. Servers report their load every report interval, so a policy sees
 * load as stale as a balancer does. A server's capacity may follow a schedule (a noisy
 * neighbour). The same seed gives the same run. The model and its limits are in
 * `docs/simulator.md`.
 *
 * @module
 */
import { createPolicy, isPolicyName, type PolicyName } from "../../policies/mod.ts";
import type { Policy, ServerView } from "../../policies/types.ts";
import type { CapacitySchedule } from "../backend/capacity_schedule.ts";
import { meanServiceTime, sampleServiceTime, type ServiceTime } from "../backend/service_time.ts";
import { RifLatency } from "../backend/rif_latency.ts";
import { EventQueue } from "./event_queue.ts";
import { Fifo } from "./fifo.ts";
import { PolicyDriver, SnapshotFeed } from "./policy_driver.ts";
import { createSimPicker, isSimPolicyName } from "./sim_policies.ts";
import { streamRandom } from "./sim_random.ts";
import type { SimPicker, SimServers } from "./sim_state.ts";
import { type LatencySummary, QueueTrend, summarize } from "./sim_stats.ts";

/** How a client reaches a server, as in `client --mode`. */
export type SimMode = "lookaside" | "watch";

/** The modes, for flags. */
export const SIM_MODES: readonly SimMode[] = ["lookaside", "watch"];

/** A backend's default report interval (as `backend --report-interval`). */
export const DEFAULT_SIM_REPORT_INTERVAL_MS = 1_000;
/** How often a balancer sends a watch update at most (as its `WatchServers` broadcast). */
export const WATCH_PUBLISH_INTERVAL_MS = 100;
/** When servers joined: long before the run, so no slow start or blackout is left from it. */
const ADDED_AT_MS = -3_600_000;
/** How often the busiest server's requests are sampled (ms of simulated time, at an arrival). */
export const BUSIEST_SAMPLE_MS = 10;

/** One simulated run. */
export interface SimOptions {
  /**
   * Capacity factor of each server (0 < F <= 1); its length is the number of servers. The offered
   * rate is computed from these, even for servers with a schedule.
   */
  capacities: readonly number[];
  /**
   * Capacity over time of each server (ms since the run's start), in place of its
   * `capacities` entry; `undefined` (or no entry) keeps that one. A request's service time is
   * stretched by the capacity when it gets its slot, as on the backend's `SlotPool`.
   */
  schedules?: readonly (CapacitySchedule | undefined)[];
  /** Service time of a request at capacity 1. */
  service: ServiceTime;
  /** Worker slots per server. */
  slots: number;
  /** Offered load as a share of the pool's capacity (sum of slots × F / mean service time). */
  load: number;
  /** A policy of `policies/mod.ts`, or a sim-only one (`oracle`, `jsq`, `random`). */
  policy: string;
  /** Requests to send. */
  requests: number;
  /** Share of the first requests left out of the figures (the empty system warming up). */
  warmup: number;
  /** Client ids the requests come from, uniformly. */
  clients: number;
  mode: SimMode;
  /** Balancers; client k asks balancer k mod B. */
  balancers: number;
  /** Servers report their load this often (ms). */
  reportIntervalMs: number;
  seed: number;
  /**
   * Servers reported before the run: each starts with a report of its share of the offered load
   * (utilization `load`, its capacity's share of the rate as `qps`, nothing in flight), as if the
   * run were a stretch of a long one, so no policy starts blind and `weighted_round_robin`'s
   * blackout (A58: a weight is trusted 10 s after its first usable report) is over. Without it,
   * policies start with no report, as a balancer that has just started.
   */
  steadyStart?: boolean;
  /** Record completions per server per simulated second ({@linkcode SimResult.timeline}). */
  timeline?: boolean;
  /**
   * Prepare every holder on every new snapshot at once, as the balancer's picker does, instead of
   * at its next pick: the same result for policies whose `prepare` draws no random number, and
   * much slower with many servers (see `policy_driver.ts`). For tests.
   */
  eagerPrepare?: boolean;
  /**
   * Round trip of a probe for policies that probe (`prequal`), ms: the answer reads the server
   * when the probe is sent and reaches the policy this much later.
   * @default {DEFAULT_SIM_PROBE_RTT_MS}
   */
  probeRttMs?: number;
  /**
   * Makes each holder's policy instead of `policy`'s defaults (a policy with other options, for
   * a parameter study); `policy` then only names it.
   */
  policyFactory?: () => Policy<unknown>;
}

/** One server's part in a run. */
export interface SimServerResult {
  readonly capacity: number;
  /** Share of all requests sent to it. */
  readonly share: number;
  /** Busy slot time over the run's slot time, 0 to 1. */
  readonly utilization: number;
  /** Its queue grew without bound over the second half of the arrivals. */
  readonly overloaded: boolean;
}

/** What a run measured. Times in ms. */
export interface SimResult {
  /** Requests measured (all but the warm-up). */
  readonly measured: number;
  /** Sojourn time (queueing plus service) of the measured requests. */
  readonly latencyMs: LatencySummary;
  /** Mean time the measured requests waited for a slot. */
  readonly meanWaitMs: number;
  /** Mean requests in the system over the measured arrivals' window (time average). */
  readonly meanInSystem: number;
  /** Completions per second over the same window. */
  readonly throughputPerS: number;
  /** Simulated time until the last request completed (s). */
  readonly simulatedS: number;
  /**
   * Herding: the largest number of requests (in service and waiting) at any one server, averaged
   * over samples every {@linkcode BUSIEST_SAMPLE_MS} during the measured window.
   */
  readonly busiestInFlight: number;
  /** Probes sent per request (0 for policies that do not probe). */
  readonly probesPerRequest: number;
  readonly servers: readonly SimServerResult[];
  /**
   * With `options.timeline`: `timeline[t][s]` is the requests server `s` completed in simulated
   * second `t` (from `t` s to `t + 1` s after the start).
   */
  readonly timeline?: number[][];
}

const ARRIVAL = 0;
const DEPARTURE = 1;
const REPORT = 2;
const REFRESH = 3;
const PUBLISH = 4;
const FLUSH = 5;
const CAPACITY = 6;
const PROBE = 7;
/** Probes on their way back at once, at most (a ring); far more than any run has. */
const PROBES_IN_FLIGHT = 1 << 16;
/** Round trip of a probe by default (ms): a gRPC call across a LAN. */
export const DEFAULT_SIM_PROBE_RTT_MS = 1;

/** Runs one simulation; throws a `RangeError` for options out of range. */
export function simulate(options: SimOptions): SimResult {
  const { capacities, service, slots, requests, clients, balancers, mode } = options;
  const n = capacities.length;
  if (n === 0) throw new RangeError("Cannot simulate as there must be at least one server");
  if (!capacities.every((f) => f > 0 && f <= 1)) {
    throw new RangeError("Cannot simulate as every capacity must be above 0 and at most 1");
  }
  const meanMs = meanServiceTime(service);
  if (!(meanMs > 0)) throw new RangeError("Cannot simulate as the mean service time must be > 0");
  const schedules = checkSchedules(options.schedules, n);
  const capacity = Float64Array.from(capacities, (f, s) => schedules[s]?.[0].capacity ?? f);
  const ratePerMs = options.load * capacities.reduce((sum, f) => sum + slots * f / meanMs, 0);
  const arrivalRng = streamRandom(options.seed, "arrivals");
  const serviceRng = streamRandom(options.seed, "service");
  const policyRng = streamRandom(options.seed, "policy");
  const setupRng = streamRandom(options.seed, "setup");

  const state: SimServers = {
    count: n,
    slots,
    capacity,
    meanServiceMs: meanMs,
    busy: new Int32Array(n),
    queued: new Int32Array(n),
    queuedWorkMs: new Float64Array(n),
    slotEndMs: new Float64Array(n * slots),
  };
  const slotRequest = new Int32Array(n * slots).fill(-1);
  const fifos = Array.from({ length: n }, () => new Fifo());
  const arrivalMs = new Float64Array(requests);
  // A request's work at capacity 1 until it gets a slot, then the time it holds the slot.
  const workMs = new Float64Array(requests);
  const sojournMs = new Float64Array(requests);
  const sent = new Float64Array(n);
  const completions = new Float64Array(n);
  const busyArea = new Float64Array(n);
  const busyTotal = new Float64Array(n);
  const busySince = new Float64Array(n);
  const reportSeq = new Float64Array(n);
  const timeline: number[][] | undefined = options.timeline ? [] : undefined;
  // What each server answers probes with, and the RIF each request found on arrival.
  const rifLatency = Array.from({ length: n }, () => new RifLatency());
  const foundRif = new Int32Array(requests);
  const probeRttMs = options.probeRttMs ?? DEFAULT_SIM_PROBE_RTT_MS;
  const probeHolder = new Int32Array(PROBES_IN_FLIGHT);
  const probeServer = new Int32Array(PROBES_IN_FLIGHT);
  const probeRif = new Float64Array(PROBES_IN_FLIGHT);
  const probeLatency = new Float64Array(PROBES_IN_FLIGHT);
  let probesSent = 0;
  let probesBack = 0;

  // What policies see: the servers' views, one snapshot for the reports between two reads.
  const views: ServerView[] = capacities.map((f, i) => ({
    id: i,
    address: `server-${i}:50051`,
    load: options.steadyStart
      ? {
        cpuLoad: Math.min(100, 100 * options.load),
        inFlight: 0,
        queueLength: 0,
        qps: options.load * slots * f * 1_000 / meanMs,
        eps: 0,
        reportedAtMs: 0,
        seq: 0,
      }
      : undefined,
    addedAtMs: ADDED_AT_MS,
  }));
  const serverSet = new SnapshotFeed(views);
  const eager = options.eagerPrepare === true;
  const clientIds = Array.from({ length: clients }, (_, k) => `client-${k}`);
  const drivers: PolicyDriver[] = [];
  // Watch: what each balancer last published to its clients.
  const published: SnapshotFeed[] = [];
  if (mode === "watch") {
    for (let b = 0; b < balancers; b++) published.push(new SnapshotFeed(views.slice()));
  }
  let picker: (clientIndex: number, nowMs: number) => number;
  if (isSimPolicyName(options.policy)) {
    const sim: SimPicker = createSimPicker(options.policy, state, policyRng);
    picker = (k, now) => sim.pick(k, now);
  } else if (isPolicyName(options.policy) || options.policyFactory) {
    const name = options.policy;
    const create = options.policyFactory ?? (() => createPolicy(name as PolicyName));
    // Lookaside: one state per balancer, told how many balancers there are. Watch: one per
    // client, which, like the client's own picker, counts only its own picks.
    const holders = mode === "lookaside" ? balancers : clients;
    const replicas = mode === "lookaside" ? balancers : 1;
    for (let h = 0; h < holders; h++) {
      const feed = mode === "lookaside" ? serverSet : published[h % balancers];
      drivers.push(
        new PolicyDriver(create(), feed, 0, policyRng, replicas, clientIds, eager),
      );
    }
    const pickAndProbe = (h: number, k: number, now: number) => {
      const driver = drivers[h];
      const s = driver.pick(k, now);
      for (let id = driver.takeProbe(); id >= 0; id = driver.takeProbe()) {
        if (probesSent - probesBack === PROBES_IN_FLIGHT) {
          throw new Error("Cannot simulate as too many probes are in flight at once");
        }
        const slot = probesSent++ % PROBES_IN_FLIGHT;
        probeHolder[slot] = h;
        probeServer[slot] = id;
        probeRif[slot] = rifLatency[id].rif;
        probeLatency[slot] = rifLatency[id].estimateMs();
        events.push(now + probeRttMs, PROBE, slot);
      }
      return s;
    };
    picker = mode === "lookaside"
      ? (k, now) => pickAndProbe(k % balancers, k, now)
      : (k, now) => pickAndProbe(k, k, now);
  } else {
    throw new RangeError(`Cannot simulate as '${options.policy}' is not a policy`);
  }

  const events = new EventQueue(4 * (n * slots + n + drivers.length + balancers));
  const stepServer: number[] = [];
  const stepCapacity: number[] = [];
  schedules.forEach((schedule, s) => {
    for (const step of schedule?.slice(1) ?? []) {
      events.push(step.atMs, CAPACITY, stepServer.length);
      stepServer.push(s);
      stepCapacity.push(step.capacity);
    }
  });
  const interval = options.reportIntervalMs;
  for (let i = 0; i < n; i++) events.push(setupRng() * interval, REPORT, i);
  drivers.forEach((driver, h) => {
    if (driver.refreshMs !== undefined) events.push(driver.refreshMs, REFRESH, h);
  });
  let flushPending = false;
  const publishPending = new Uint8Array(balancers);
  const lastPublishMs = new Float64Array(balancers).fill(-Infinity);
  const nextArrival = () => -Math.log(1 - arrivalRng()) / ratePerMs;
  events.push(nextArrival(), ARRIVAL, 0);

  const warmupCount = Math.min(requests - 1, Math.floor(options.warmup * requests));
  const trendStartMs = requests / ratePerMs / 2;
  const trend = new QueueTrend(n);
  let arrived = 0;
  let inSystem = 0;
  let measuring = false;
  let windowStartMs = 0;
  let windowEndMs = 0;
  let areaInSystem = 0;
  let completedInWindow = 0;
  let lastMs = 0;
  let now = 0;
  let busiestSum = 0;
  let busiestSamples = 0;
  let nextSampleMs = 0;

  const markBusy = (s: number) => {
    const dt = now - busySince[s];
    busyArea[s] += state.busy[s] * dt;
    busyTotal[s] += state.busy[s] * dt;
    busySince[s] = now;
  };
  const start = (slot: number, request: number, s: number) => {
    slotRequest[slot] = request;
    const heldMs = workMs[request] / capacity[s];
    workMs[request] = heldMs;
    const end = now + heldMs;
    state.slotEndMs[slot] = end;
    markBusy(s);
    state.busy[s]++;
    events.push(end, DEPARTURE, slot);
  };
  const running = () => arrived < requests || inSystem > 0;

  while (events.pop()) {
    now = events.time;
    if (measuring) areaInSystem += inSystem * (now - lastMs);
    lastMs = now;
    const payload = events.payload;
    switch (events.kind) {
      case ARRIVAL: {
        const request = arrived++;
        const client = clients === 1 ? 0 : Math.floor(arrivalRng() * clients);
        const work = sampleServiceTime(service, serviceRng);
        arrivalMs[request] = now;
        workMs[request] = work;
        if (measuring && now >= nextSampleMs) {
          let busiest = 0;
          for (let i = 0; i < n; i++) {
            const held = state.busy[i] + state.queued[i];
            if (held > busiest) busiest = held;
          }
          busiestSum += busiest;
          busiestSamples++;
          nextSampleMs = now + BUSIEST_SAMPLE_MS;
        }
        const s = picker(client, now);
        if (s < 0) throw new Error(`Cannot simulate as '${options.policy}' named no server`);
        sent[s]++;
        foundRif[request] = rifLatency[s].start();
        if (now >= trendStartMs) trend.sent[s]++;
        inSystem++;
        if (state.busy[s] < slots) {
          let slot = s * slots;
          while (slotRequest[slot] !== -1) slot++;
          start(slot, request, s);
        } else {
          fifos[s].push(request);
          state.queued[s]++;
          state.queuedWorkMs[s] += work;
        }
        if (request === warmupCount) {
          measuring = true;
          windowStartMs = now;
        }
        if (arrived < requests) events.push(now + nextArrival(), ARRIVAL, 0);
        else {
          measuring = false;
          windowEndMs = now;
        }
        break;
      }
      case DEPARTURE: {
        const slot = payload;
        const s = (slot / slots) | 0;
        const request = slotRequest[slot];
        sojournMs[request] = now - arrivalMs[request];
        rifLatency[s].end(foundRif[request], sojournMs[request]);
        slotRequest[slot] = -1;
        markBusy(s);
        state.busy[s]--;
        completions[s]++;
        if (timeline) {
          const second = Math.floor(now / 1_000);
          while (timeline.length <= second) timeline.push(new Array(n).fill(0));
          timeline[second][s]++;
        }
        inSystem--;
        if (measuring) completedInWindow++;
        const next = fifos[s].shift();
        if (next >= 0) {
          state.queued[s]--;
          state.queuedWorkMs[s] = state.queued[s] === 0 ? 0 : state.queuedWorkMs[s] - workMs[next];
          start(slot, next, s);
        }
        break;
      }
      case REPORT: {
        const s = payload;
        markBusy(s);
        const inFlight = state.busy[s] + state.queued[s];
        serverSet.set(s, {
          ...views[s],
          load: {
            cpuLoad: 100 * busyArea[s] / (slots * interval),
            inFlight,
            queueLength: state.queued[s],
            qps: completions[s] * 1_000 / interval,
            eps: 0,
            reportedAtMs: now,
            seq: ++reportSeq[s],
          },
        }, now);
        busyArea[s] = 0;
        completions[s] = 0;
        if (mode === "lookaside") {
          // Reports that land at one instant make one snapshot, as the server set's microtask.
          if (eager && !flushPending) {
            flushPending = true;
            events.push(now, FLUSH, 0);
          }
        } else {
          for (let b = 0; b < balancers; b++) {
            if (publishPending[b]) continue;
            publishPending[b] = 1;
            events.push(Math.max(now, lastPublishMs[b] + WATCH_PUBLISH_INTERVAL_MS), PUBLISH, b);
          }
        }
        if (now >= trendStartMs && arrived < requests) {
          trend.sample(s, (now - trendStartMs) / 1_000, inFlight);
        }
        // After the last arrival no policy picks again, so reports change nothing.
        if (arrived < requests) events.push(now + interval, REPORT, s);
        break;
      }
      case FLUSH: {
        flushPending = false;
        for (const driver of drivers) driver.update(now);
        break;
      }
      case REFRESH: {
        const driver = drivers[payload];
        driver.refresh(now);
        if (arrived < requests) events.push(now + driver.refreshMs!, REFRESH, payload);
        break;
      }
      case PUBLISH: {
        publishPending[payload] = 0;
        lastPublishMs[payload] = now;
        published[payload].publish(serverSet.snapshot, now);
        for (let k = payload; k < drivers.length; k += balancers) drivers[k].update(now);
        break;
      }
      case PROBE: {
        probesBack++;
        const latency = probeLatency[payload];
        drivers[probeHolder[payload]].probeAnswered(
          probeServer[payload],
          probeRif[payload],
          latency === latency ? latency : -1,
          now,
        );
        break;
      }
      case CAPACITY: {
        capacity[stepServer[payload]] = stepCapacity[payload];
        break;
      }
    }
    if (!running()) break;
  }

  const measured = sojournMs.subarray(warmupCount);
  const latencyMs = summarize(measured);
  let serviceOfMeasured = 0;
  for (let r = warmupCount; r < requests; r++) serviceOfMeasured += workMs[r];
  const windowMs = windowEndMs - windowStartMs;
  for (let s = 0; s < n; s++) markBusy(s);
  return {
    measured: measured.length,
    latencyMs,
    meanWaitMs: latencyMs.mean - serviceOfMeasured / measured.length,
    meanInSystem: windowMs > 0 ? areaInSystem / windowMs : NaN,
    throughputPerS: windowMs > 0 ? completedInWindow * 1_000 / windowMs : NaN,
    simulatedS: now / 1_000,
    busiestInFlight: busiestSamples > 0 ? busiestSum / busiestSamples : NaN,
    probesPerRequest: probesSent / requests,
    servers: capacities.map((f, s) => ({
      capacity: f,
      share: sent[s] / requests,
      utilization: now > 0 ? busyTotal[s] / (slots * now) : 0,
      overloaded: trend.overloaded(s),
    })),
    ...(timeline ? { timeline } : {}),
  };
}

/** Checks `schedules` against `n` servers: one per server at most, each as the backend takes it. */
function checkSchedules(
  schedules: SimOptions["schedules"],
  n: number,
): readonly (CapacitySchedule | undefined)[] {
  if (schedules === undefined) return [];
  if (schedules.length > n) {
    throw new RangeError(
      "Cannot simulate as there must be at most one capacity schedule per server",
    );
  }
  for (const schedule of schedules) {
    if (schedule === undefined) continue;
    const ok = schedule.length > 0 && schedule[0].atMs === 0 &&
      schedule.every((step, i) =>
        step.capacity > 0 && step.capacity <= 1 && (i === 0 || step.atMs > schedule[i - 1].atMs)
      );
    if (!ok) {
      throw new RangeError(
        "Cannot simulate as a capacity schedule must start at 0 ms, ascend in time and keep " +
          "every capacity above 0 and at most 1",
      );
    }
  }
  return schedules;
}
