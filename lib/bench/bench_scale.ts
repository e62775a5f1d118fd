/**
 * The benchmark's `scale` scenario: one balancer on etcd with 1,000 registered servers, served by
 * a few fleet processes (`lib/bench/fleet.ts`), each server a real etcd key under its own lease and a
 * real gRPC endpoint that the balancer health-checks.
 *
 * What it measures, at the balancer:
 *
 * - **registration to first pick**: a fifth fleet process registers one more server and
 *   deregisters it again, `repeats` times. A server is in the picks when it is in the balancer's
 *   snapshot (`GetServer` picks from it and nothing else), which the bench follows with a
 *   `WatchServers` stream, the balancer's rate limit on it lowered to 25 ms
 *   (`--watch-interval-ms`). The time runs from the start of the registration in the fleet
 *   (before the lease grant and the put, on the wall clock both processes share) to the arrival
 *   of the first snapshot naming the server: etcd, the balancer's watch, its first health check
 *   and the stream's delivery included, an upper bound by at most the 25 ms rate limit;
 * - **deregistration to last pick**: from the start of the etcd delete to the first snapshot
 *   without the server (the server still answers its health checks meanwhile, so this is the
 *   etcd path alone); and, once, from a SIGKILL of a whole fleet process to the first snapshot
 *   without any of its servers (health checks eject them before their leases expire);
 * - the balancer's memory (`lb_process_resident_memory_bytes`, `lb_process_heap_used_bytes`) and
 *   CPU (`lb_process_cpu_seconds_total`, over the churn) from its `/metrics`, with no server and
 *   with all of them;
 * - the pick cost: the mean `GetServer` time inside the balancer at this size, per policy, from
 *   `lb_get_server_duration_seconds` (sum over count), and the round trip seen by the bench. The
 *   balancer's own policy (`round_robin`) is restored after, for the SIGKILL, because
 *   `consistent_hash` rebuilds its ring at each ejection.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { PolicyName } from "../../policies/mod.ts";
import type { FleetSize } from "./bench_scenarios.ts";
import type { EntryProcess, spawnEntry } from "../harness/entry_process.ts";
import { LatencyRecorder, type LatencySummary } from "../client/latency.ts";
import { freePort } from "../harness/ports.ts";
import {
  createLoadBalancerClient,
  type LoadBalancerClient,
  POLLING_CHANNEL_OPTIONS,
  type ServerList,
  unary,
} from "../wire/proto.ts";
import { waitFor } from "../harness/wait.ts";

/**
 * The balancer's `--watch-interval-ms` here: each `WatchServers` message holds the whole set, so
 * a shorter interval makes a burst of changes cost the balancer more than the error it removes.
 */
const WATCH_INTERVAL_MS = 25;
/** GetServer calls per policy for the pick cost. */
const PICKS_PER_POLICY = 2_000;

/** The balancer's process figures, from its `/metrics`. */
export interface ProcessFigures {
  rssMiB: number;
  heapUsedMiB: number;
}

/** What the `scale` scenario measured. */
export interface ScaleFigures {
  backends: number;
  fleetProcesses: number;
  /** Seconds from starting the fleets until the balancer's snapshot held every server. */
  startupS: number;
  /** Per repeat: registration start (etcd lease grant and put) to the first snapshot with it. */
  registerToPickMs: number[];
  /**
   * Repeats whose server was never in the picks before its deregistration (`intervalMs` later):
   * a registration to pick time over `intervalMs`, left out of `registerToPickMs`.
   */
  neverPicked: number;
  /** Time from a registration to its deregistration. */
  intervalMs: number;
  /** Per repeat: etcd delete start to the first snapshot without it. */
  deregisterToLastPickMs: number[];
  /** Per repeat: the fleet's lease grant and put, and its delete and revoke. */
  etcdPutMs: number[];
  etcdDeleteMs: number[];
  /** Servers of the fleet process killed (SIGKILL), and the time to the first snapshot without any. */
  killedServers: number;
  killToLastPickMs: number;
  /** The balancer with no server; with every server, the mean and the max of samples taken once a second over the churn. */
  idle: ProcessFigures;
  loadedMean: ProcessFigures;
  loaded: ProcessFigures;
  memorySamples: number;
  /** The samples, in order: resident MiB, then heap used MiB. */
  rssSamplesMiB: number[];
  heapSamplesMiB: number[];
  /** The balancer's CPU over the churn, in percent of one core, and the window's length. */
  cpuPercent: number;
  cpuWindowS: number;
  /** Mean GetServer time inside the balancer, by policy, in µs. */
  getServerMeanUs: Record<string, number>;
  /** GetServer calls made for the pick cost, and their round trips seen by the bench. */
  getServerCalls: number;
  getServerRoundTripMs: LatencySummary;
}

/** What {@linkcode runScale} needs from the runner. */
export interface ScaleDeps {
  spawn: (...args: Parameters<typeof spawnEntry>) => EntryProcess;
  /** Starts the balancer on `port` with `prefix` and the extra flags. */
  spawnBalancer: (port: number, prefix: string, extra: string[]) => EntryProcess;
  etcdEndpoint: string;
  prefix: string;
  /** The bench's `--http-port`, which the balancer then serves already. */
  httpPort: number | undefined;
  policies: PolicyName[];
  /** GetServer calls in flight while measuring the pick cost. */
  concurrency: number;
  size: FleetSize;
  /** Told what is happening, and how far along (0 to 1). */
  progress: (what: string, fraction: number) => void;
}

/** Wall-clock time in ms since the epoch, with a fraction (as lib/bench/fleet.ts prints it). */
function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Follows the balancer's snapshot over `WatchServers`: when each server entered and left it. */
class SnapshotTracker {
  #current = new Set<string>();
  #entered = new Map<string, number[]>();
  #left = new Map<string, number[]>();
  #call: grpc.ClientReadableStream<ServerList>;
  #broken: Error | undefined;
  #closed = false;

  constructor(lb: LoadBalancerClient) {
    this.#call = lb.WatchServers({ client_id: "bench-scale" });
    this.#call.on("data", (list: ServerList) => this.#update(list, wallMs()));
    this.#call.on("error", (error) => this.#broken ??= error);
    this.#call.on("end", () => this.#broken ??= new Error("the stream ended"));
  }

  /** Throws if the stream broke: every figure after that would be wrong. */
  check(): void {
    if (this.#broken && !this.#closed) {
      throw new Error(`The WatchServers stream broke: ${this.#broken.message}`);
    }
  }

  get size(): number {
    return this.#current.size;
  }

  has(address: string): boolean {
    return this.#current.has(address);
  }

  /** First time `address` entered the snapshot at or after `sinceMs`. */
  enteredAfter(address: string, sinceMs: number): number | undefined {
    return this.#entered.get(address)?.find((t) => t >= sinceMs);
  }

  /** First time `address` left the snapshot at or after `sinceMs`. */
  leftAfter(address: string, sinceMs: number): number | undefined {
    return this.#left.get(address)?.find((t) => t >= sinceMs);
  }

  close(): void {
    this.#closed = true;
    this.#call.cancel();
  }

  #update(list: ServerList, at: number): void {
    const next = new Set(list.servers.map((s) => s.server_address));
    for (const a of next) if (!this.#current.has(a)) push(this.#entered, a, at);
    for (const a of this.#current) if (!next.has(a)) push(this.#left, a, at);
    this.#current = next;
  }
}

function push(map: Map<string, number[]>, key: string, value: number): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

/** The JSON lines a fleet process printed so far. */
function fleetLines(fleet: EntryProcess): Record<string, unknown>[] {
  return fleet.stdout().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

/** Samples of the balancer's `/metrics` (unlabelled series only). */
async function scrape(port: number): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await response.text();
  const values = new Map<string, number>();
  for (const line of text.split("\n")) {
    const match = /^([a-z_]+) (\S+)$/.exec(line);
    if (match) values.set(match[1], Number(match[2]));
  }
  return values;
}

function processFigures(metrics: Map<string, number>): ProcessFigures {
  const mib = (name: string) => round((metrics.get(name) ?? 0) / 2 ** 20, 1);
  return {
    rssMiB: mib("lb_process_resident_memory_bytes"),
    heapUsedMiB: mib("lb_process_heap_used_bytes"),
  };
}

/** Mean and max of memory samples. */
function memoryFigures(
  samples: ProcessFigures[],
): Pick<
  ScaleFigures,
  "loadedMean" | "loaded" | "memorySamples" | "rssSamplesMiB" | "heapSamplesMiB"
> {
  const of = (pick: (f: ProcessFigures) => number) => ({
    mean: round(samples.reduce((sum, f) => sum + pick(f), 0) / samples.length, 1),
    max: Math.max(...samples.map(pick)),
  });
  const rss = of((f) => f.rssMiB);
  const heap = of((f) => f.heapUsedMiB);
  return {
    loadedMean: { rssMiB: rss.mean, heapUsedMiB: heap.mean },
    loaded: { rssMiB: rss.max, heapUsedMiB: heap.max },
    memorySamples: samples.length,
    rssSamplesMiB: samples.map((f) => f.rssMiB),
    heapSamplesMiB: samples.map((f) => f.heapUsedMiB),
  };
}

/** Runs the scenario; every process it starts is stopped before it returns. */
export async function runScale(deps: ScaleDeps): Promise<ScaleFigures> {
  const { size } = deps;
  const port = freePort();
  const httpPort = deps.httpPort ?? freePort();
  const balancer = deps.spawnBalancer(port, deps.prefix, [
    ...(deps.httpPort === undefined ? ["--http-port", String(httpPort)] : []),
    "--watch-interval-ms",
    String(WATCH_INTERVAL_MS),
  ]);
  const lb = createLoadBalancerClient(
    `127.0.0.1:${port}`,
    undefined,
    undefined,
    POLLING_CHANNEL_OPTIONS,
  );
  const fleets: EntryProcess[] = [];
  let tracker: SnapshotTracker | undefined;
  const alive = (what: string) => {
    tracker?.check();
    const dead = [balancer, ...fleets].find((p) => p.exited);
    if (dead) throw new Error(`${dead.name} exited while ${what}:\n${dead.log()}`);
  };
  try {
    await waitFor(
      "the scale balancer to answer",
      async () => {
        alive("starting");
        await unary(lb.ListServers, lb, {}, { deadline: Date.now() + 1_000 });
        return scrape(httpPort);
      },
      20_000,
      50,
    );
    const idle = processFigures(await scrape(httpPort));
    tracker = new SnapshotTracker(lb);
    const t0 = performance.now();
    const fleetArgs = ["--etcd", deps.etcdEndpoint, "--etcd-prefix", deps.prefix];
    for (let i = 0; i < size.processes; i++) {
      const count = Math.floor(size.backends / size.processes) +
        (i < size.backends % size.processes ? 1 : 0);
      fleets.push(deps.spawn("balancer", [...fleetArgs, "--count", String(count)], {
        script: "lib/bench/fleet.ts",
        name: `fleet ${i + 1}`,
        captureStdout: true,
      }));
    }
    const t = tracker;
    await waitFor(
      `the balancer to pick from ${size.backends} servers`,
      () => {
        alive("registering");
        deps.progress(`${t.size}/${size.backends} servers in the picks`, t.size / size.backends);
        return t.size >= size.backends;
      },
      300_000,
      100,
    );
    const startupS = round((performance.now() - t0) / 1_000, 1);

    const before = await scrape(httpPort);
    const churnStarted = performance.now();
    const churner = deps.spawn("balancer", [
      ...fleetArgs,
      "--count",
      "0",
      "--churn",
      String(size.repeats),
      "--churn-interval-ms",
      String(size.intervalMs),
    ], { script: "lib/bench/fleet.ts", name: "fleet churn", captureStdout: true });
    fleets.push(churner);
    const churnS = (2 * size.repeats * size.intervalMs) / 1_000;
    const samples: ProcessFigures[] = [];
    let sampledAt = 0;
    await waitFor(
      "the churn to end",
      async () => {
        alive("churning");
        if (performance.now() - sampledAt >= 1_000) {
          sampledAt = performance.now();
          samples.push(processFigures(await scrape(httpPort)));
        }
        deps.progress(
          `registering one more server (${size.repeats} times)`,
          Math.min(1, (performance.now() - churnStarted) / 1_000 / churnS),
        );
        return fleetLines(churner).some((l) => l.churnDone);
      },
      churnS * 1_000 + 60_000,
      100,
    );
    const after = await scrape(httpPort);
    const cpuWindowS = (performance.now() - churnStarted) / 1_000;
    const cpuS = (after.get("lb_process_cpu_seconds_total") ?? 0) -
      (before.get("lb_process_cpu_seconds_total") ?? 0);
    const churn = churnFigures(fleetLines(churner), t);

    const picks = await pickCost(lb, httpPort, deps);
    const killed = fleets[size.processes - 1];
    const ready = fleetLines(killed).find((l) => Array.isArray(l.addresses));
    const addresses = (ready?.addresses ?? []) as string[];
    const killedAt = wallMs();
    killed.signal("SIGKILL");
    deps.progress(`SIGKILL of a fleet of ${addresses.length} servers`, 1);
    await waitFor(
      `the balancer to drop the ${addresses.length} killed servers`,
      () => {
        return addresses.every((a) => !t.has(a));
      },
      30_000,
      20,
    );
    const lastLeft = Math.max(...addresses.map((a) => t.leftAfter(a, killedAt) ?? killedAt));
    return {
      backends: size.backends,
      fleetProcesses: size.processes,
      intervalMs: size.intervalMs,
      startupS,
      ...churn,
      killedServers: addresses.length,
      killToLastPickMs: round(lastLeft - killedAt, 1),
      idle,
      ...memoryFigures([...samples, processFigures(after)]),
      cpuPercent: round((100 * cpuS) / cpuWindowS, 1),
      cpuWindowS: round(cpuWindowS, 1),
      ...picks,
    };
  } catch (error) {
    const log = balancer.log().split("\n").slice(-40).join("\n");
    throw new Error(`${(error as Error).message}\nThe balancer's last log lines:\n${log}`);
  } finally {
    tracker?.close();
    lb.close();
    await Promise.all([balancer, ...fleets].map((p) => p.stop(5_000)));
  }
}

/** Matches the churn fleet's steps with the snapshots. */
function churnFigures(lines: Record<string, unknown>[], tracker: SnapshotTracker) {
  const figures = {
    neverPicked: 0,
    registerToPickMs: [] as number[],
    deregisterToLastPickMs: [] as number[],
    etcdPutMs: [] as number[],
    etcdDeleteMs: [] as number[],
  };
  for (const line of lines) {
    const address = line.address as string;
    const atMs = line.atMs as number;
    if (line.event === "register") {
      const entered = tracker.enteredAfter(address, atMs);
      if (entered === undefined) figures.neverPicked++;
      else figures.registerToPickMs.push(round(entered - atMs, 1));
      figures.etcdPutMs.push(round(line.etcdMs as number, 1));
    } else if (line.event === "deregister") {
      const left = tracker.leftAfter(address, atMs);
      // Never picked (counted above), or still picked at the end: a failed measurement.
      if (left === undefined && tracker.enteredAfter(address, 0) !== undefined) {
        throw new Error(`${address} was still in the picks after its deregistration`);
      }
      if (left !== undefined) figures.deregisterToLastPickMs.push(round(left - atMs, 1));
      figures.etcdDeleteMs.push(round(line.etcdMs as number, 1));
    }
  }
  return figures;
}

/** Mean GetServer time inside the balancer per policy, and the round trips seen by the bench. */
async function pickCost(
  lb: LoadBalancerClient,
  httpPort: number,
  { policies, concurrency, progress }: ScaleDeps,
): Promise<Pick<ScaleFigures, "getServerMeanUs" | "getServerCalls" | "getServerRoundTripMs">> {
  const roundTrips = new LatencyRecorder();
  const getServerMeanUs: Record<string, number> = {};
  let original: string | undefined;
  for (const [i, policy] of policies.entries()) {
    progress(`GetServer cost with ${policy}`, i / policies.length);
    const set = await unary(lb.SetPolicy, lb, { policy }, { deadline: Date.now() + 5_000 });
    original ??= set.previous;
    const before = await scrape(httpPort);
    let next = 0;
    const worker = async () => {
      while (next < PICKS_PER_POLICY) {
        const n = next++;
        const t0 = performance.now();
        await unary(lb.GetServer, lb, { client_id: `u${n % 1_000}` }, {
          deadline: Date.now() + 5_000,
        });
        roundTrips.record(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const after = await scrape(httpPort);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const count = delta("lb_get_server_duration_seconds_count");
    getServerMeanUs[policy] = count > 0
      ? round((1e6 * delta("lb_get_server_duration_seconds_sum")) / count, 2)
      : 0;
  }
  // What follows (the SIGKILL) runs under the balancer's own policy again, as the churn did.
  if (original !== undefined) {
    await unary(lb.SetPolicy, lb, { policy: original }, { deadline: Date.now() + 5_000 });
  }
  return {
    getServerMeanUs,
    getServerCalls: PICKS_PER_POLICY * policies.length,
    getServerRoundTripMs: roundTrips.summary(),
  };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
