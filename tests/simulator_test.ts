/**
 * The simulator (`lib/sim/`) against queueing theory (M/M/1, M/M/c, Little's law), known
 * orderings of policies, the real policies it runs, determinism, and its flags. Every run has a
 * fixed seed, so every figure here is the same on every machine.
 */
import assert from "node:assert/strict";
import { type Policy, POLICY_NAMES, type ServerView } from "../policies/mod.ts";
import type { CapacitySchedule } from "../lib/backend/capacity_schedule.ts";
import { parseServiceTime } from "../lib/backend/service_time.ts";
import { UsageError } from "../lib/runtime/flags.ts";
import { EventQueue } from "../lib/sim/event_queue.ts";
import { PolicyDriver, SnapshotFeed } from "../lib/sim/policy_driver.ts";
import { parseSimFlags } from "../lib/sim/sim_flags.ts";
import { simJson } from "../lib/sim/sim_report.ts";
import { type SimOptions, type SimResult, simulate } from "../lib/sim/simulator.ts";

const DEFAULTS: SimOptions = {
  capacities: [1],
  service: parseServiceTime("exp:1ms"),
  slots: 1,
  load: 0.5,
  policy: "round_robin",
  requests: 100_000,
  warmup: 0.02,
  clients: 10,
  mode: "lookaside",
  balancers: 1,
  reportIntervalMs: 1_000,
  seed: 1,
};

function run(options: Partial<SimOptions>): SimResult {
  return simulate({ ...DEFAULTS, ...options });
}

/** Asserts `actual` is within `tolerance` (relative) of `expected`. */
function near(actual: number, expected: number, tolerance: number, what: string): void {
  const error = Math.abs(actual / expected - 1);
  assert.ok(
    error <= tolerance,
    `${what}: ${actual.toFixed(4)} against ${expected.toFixed(4)} (${
      (error * 100).toFixed(2)
    } % off)`,
  );
}

/** Erlang's C formula: the probability an arrival waits in M/M/c with offered load `a` = λ/μ. */
function erlangC(c: number, a: number): number {
  let sum = 0;
  let term = 1;
  for (let k = 0; k < c; k++) {
    if (k > 0) term *= a / k;
    sum += term;
  }
  const waiting = term * a / c / (1 - a / c);
  return waiting / (sum + waiting);
}

// M/M/1 with μ = 1/ms: the sojourn time is exponential with rate μ - λ, so its mean is
// 1/(μ - λ) and its p99 ln(100)/(μ - λ). Near saturation the queue's long memory makes the
// estimates converge slowly, hence the larger run at 0.9.
for (const [load, requests] of [[0.5, 400_000], [0.7, 400_000], [0.9, 4_000_000]]) {
  Deno.test(`simulate() matches M/M/1 mean and p99 sojourn within 3 % at load ${load}`, () => {
    const result = run({ load, requests, clients: 1 });
    const rate = 1 - load;
    near(result.latencyMs.mean, 1 / rate, 0.03, "mean");
    near(result.latencyMs.p99, Math.log(100) / rate, 0.03, "p99");
  });
}

Deno.test("simulate() matches the M/M/c mean wait of Erlang C within 3 % (c = 4, load 0.8)", () => {
  const c = 4;
  const load = 0.8;
  const result = run({ slots: c, load, requests: 400_000 });
  const lambda = load * c; // per ms, with μ = 1/ms
  near(result.meanWaitMs, erlangC(c, lambda) / (c - lambda), 0.03, "mean wait");
});

Deno.test("simulate() keeps Little's law: mean number in system = throughput × mean sojourn", () => {
  const result = run({
    capacities: [1, 1, 0.25],
    service: parseServiceTime("lognormal:20ms:1"),
    policy: "least_load",
    load: 0.7,
  });
  const throughputPerMs = result.throughputPerS / 1_000;
  near(result.meanInSystem, throughputPerMs * result.latencyMs.mean, 0.02, "L against λW");
});

Deno.test("simulate(): at load 0.9 on 8 equal servers, jsq beats random in mean and p99", () => {
  const options = { capacities: Array(8).fill(1), load: 0.9, requests: 200_000 };
  const jsq = run({ ...options, policy: "jsq" }).latencyMs;
  const random = run({ ...options, policy: "random" }).latencyMs;
  assert.ok(jsq.mean < random.mean, `mean: jsq ${jsq.mean}, random ${random.mean}`);
  assert.ok(jsq.p99 < random.p99, `p99: jsq ${jsq.p99}, random ${random.p99}`);
});

Deno.test("simulate(): oracle is at least as good as every real policy on capacities 1,1,0.25", () => {
  const options = {
    capacities: [1, 1, 0.25],
    service: parseServiceTime("exp:20ms"),
    requests: 100_000,
    warmup: 0.1,
  };
  for (const load of [0.3, 0.6]) {
    const oracle = run({ ...options, load, policy: "oracle" }).latencyMs;
    for (const policy of POLICY_NAMES) {
      const real = run({ ...options, load, policy }).latencyMs;
      assert.ok(
        oracle.mean <= real.mean,
        `${policy} at ${load}: mean ${real.mean} < ${oracle.mean}`,
      );
      assert.ok(oracle.p99 <= real.p99, `${policy} at ${load}: p99 ${real.p99} < ${oracle.p99}`);
    }
  }
});

Deno.test("simulate() probes for prequal: about the probes it asks per pick, none for others, and a slow server learnt from the answers", () => {
  const options = {
    capacities: [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25],
    service: parseServiceTime("exp:20ms"),
    load: 0.85,
    requests: 30_000,
    warmup: 0.1,
    steadyStart: true,
  };
  const pq = run({ ...options, policy: "prequal" });
  assert.ok(Math.abs(pq.probesPerRequest - 2) < 0.05, `2 probes per pick: ${pq.probesPerRequest}`);
  assert.equal(run({ ...options, policy: "least_load" }).probesPerRequest, 0);
  // The two 0.25 servers hold 9 % of the capacity; answers of their latency keep them well under.
  const slowShare = pq.servers[6].share + pq.servers[7].share;
  assert.ok(slowShare < 0.09, `the slow servers' share: ${slowShare}`);
  assert.ok(!pq.servers.some((s) => s.overloaded));
  // Answers that never come back (a round trip longer than the run) leave it picking in turn.
  const blind = run({ ...options, policy: "prequal", probeRttMs: 1e9, requests: 8_000 });
  for (const server of blind.servers) assert.ok(Math.abs(server.share - 1 / 8) < 0.01);
});

Deno.test("simulate() runs round_robin itself: a third each on 1,1,0.25, the 0.25 one overloaded", () => {
  const result = run({
    capacities: [1, 1, 0.25],
    service: parseServiceTime("exp:20ms"),
    load: 0.6,
  });
  for (const server of result.servers) near(server.share, 1 / 3, 0.001, "share");
  assert.deepEqual(result.servers.map((s) => s.overloaded), [false, false, true]);
});

Deno.test("simulate() flags no server of a pool that keeps up", () => {
  for (const policy of ["least_load", "weighted_round_robin", "oracle"]) {
    const result = run({
      capacities: [1, 1, 0.25],
      service: parseServiceTime("exp:20ms"),
      load: 0.6,
      policy,
    });
    assert.deepEqual(result.servers.map((s) => s.overloaded), [false, false, false], policy);
  }
});

Deno.test("simulate() runs the real policies in watch mode and with several balancers", () => {
  const options = {
    capacities: [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25],
    service: parseServiceTime("exp:20ms"),
    load: 0.7,
    requests: 50_000,
    clients: 20,
  };
  for (const policy of POLICY_NAMES) {
    for (const [mode, balancers] of [["lookaside", 3], ["watch", 2]] as const) {
      const result = run({ ...options, policy, mode, balancers });
      const total = result.servers.reduce((sum, s) => sum + s.share, 0);
      near(total, 1, 1e-9, `${policy} ${mode}: shares`);
      assert.ok(result.latencyMs.mean > 0, `${policy} ${mode}`);
    }
  }
  // Each watch client rotates on its own, so round robin still spreads evenly overall.
  const watch = run({ ...options, mode: "watch", balancers: 2 });
  for (const server of watch.servers) near(server.share, 1 / 8, 0.01, "watch share");
});

Deno.test("simulate(): watch clients each hold their own least_load state, and 20 of them herd", () => {
  // Each client counts only its own picks between reports, so all of them send to the server
  // that last reported least load; one lookaside balancer counts every pick.
  const options = {
    capacities: [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25],
    service: parseServiceTime("exp:20ms"),
    load: 0.7,
    requests: 50_000,
    clients: 20,
    policy: "least_load",
  };
  const lookaside = run(options).latencyMs;
  const watch = run({ ...options, mode: "watch" }).latencyMs;
  assert.ok(watch.p99 > 2 * lookaside.p99, `p99: watch ${watch.p99}, lookaside ${lookaside.p99}`);
});

Deno.test("simulate() gives the same output for the same seed, and another for another seed", () => {
  const options = {
    capacities: [1, 0.5, 0.25],
    service: parseServiceTime("exp:20ms"),
    policy: "power_of_two",
    requests: 20_000,
    clients: 4,
    balancers: 2, // which client sends a request changes which balancer's state picks
  };
  const settings = (seed: number) => ({ ...DEFAULTS, ...options, seed, service: "exp:20ms" });
  const once = simJson(settings(7), run({ ...options, seed: 7 }));
  const twice = simJson(settings(7), run({ ...options, seed: 7 }));
  const other = simJson(settings(7), run({ ...options, seed: 8 }));
  assert.equal(once, twice);
  assert.notEqual(once, other);
});

Deno.test("simulate(): a server's capacity follows its schedule, as a noisy neighbour", () => {
  // Two equal servers at load 0.5; the second runs at 0.3 for the middle third of the arrivals,
  // below the half of the load round robin still sends it.
  const requests = 30_000;
  const arrivalsMs = requests / (0.5 * 2 / 20);
  const options = {
    capacities: [1, 1],
    service: parseServiceTime("exp:20ms"),
    requests,
  };
  const noisy: CapacitySchedule = [
    { atMs: 0, capacity: 1 },
    { atMs: arrivalsMs / 3, capacity: 0.3 },
    { atMs: 2 * arrivalsMs / 3, capacity: 1 },
  ];
  const schedules = [undefined, noisy];
  const steady = run({ ...options, policy: "round_robin" }).latencyMs;
  const dipped = run({ ...options, policy: "round_robin", schedules }).latencyMs;
  assert.ok(dipped.p99 > 20 * steady.p99, `round_robin p99: ${dipped.p99} against ${steady.p99}`);
  const oracle = run({ ...options, policy: "oracle" }).servers[1].share;
  const shifted = run({ ...options, policy: "oracle", schedules }).servers[1].share;
  assert.ok(shifted < oracle - 0.05, `oracle's share of the noisy server: ${shifted}, ${oracle}`);
  // A schedule that never changes (even with a step) is the constant run, to the last digit.
  const flat: CapacitySchedule = [{ atMs: 0, capacity: 1 }, { atMs: arrivalsMs / 2, capacity: 1 }];
  for (const policy of ["round_robin", "least_load", "oracle"]) {
    const settings = { ...DEFAULTS, ...options, policy, service: "exp:20ms" };
    assert.equal(
      simJson(settings, run({ ...options, policy, schedules: [flat, undefined] })),
      simJson(settings, run({ ...options, policy })),
      policy,
    );
  }
});

Deno.test("simulate(): a request's service is stretched by the capacity when it gets its slot", () => {
  // One request of 100 ms: it arrives at `arrivedMs` and completes 100 ms later.
  const options = { service: parseServiceTime("fixed:100ms"), requests: 1, warmup: 0 };
  const arrivedMs = run(options).simulatedS * 1_000 - 100;
  const dropAt = (atMs: number) =>
    run({ ...options, schedules: [[{ atMs: 0, capacity: 1 }, { atMs, capacity: 0.25 }]] });
  near(dropAt(arrivedMs + 1).latencyMs.mean, 100, 1e-9, "capacity dropped after it started");
  near(dropAt(arrivedMs - 1).latencyMs.mean, 400, 1e-9, "capacity dropped before it started");
});

Deno.test("simulate() rejects a schedule that does not start at 0 or leaves (0, 1]", () => {
  for (const schedule of [[{ atMs: 5, capacity: 1 }], [{ atMs: 0, capacity: 0 }]]) {
    assert.throws(() => run({ schedules: [schedule] }), RangeError);
  }
  assert.throws(() => run({ schedules: [undefined, undefined] }), RangeError);
});

Deno.test("simulate() counts completions per server per simulated second when asked", () => {
  const options = { capacities: [1, 0.5, 0.25], service: parseServiceTime("exp:20ms") };
  const result = run({ ...options, policy: "least_load", requests: 20_000, timeline: true });
  const timeline = result.timeline!;
  assert.equal(timeline.length, Math.floor(result.simulatedS) + 1);
  result.servers.forEach((server, s) => {
    const completed = timeline.reduce((sum, second) => sum + second[s], 0);
    assert.equal(completed, Math.round(server.share * 20_000), `server ${s}`);
  });
  assert.equal(run({ ...options, requests: 1_000 }).timeline, undefined);
});

Deno.test("simulate(): with a steady start weighted_round_robin's blackout is over at once", () => {
  // From a cold start A58's blackout gives every server an equal weight for its first 10 s, and
  // the 0.25 server's queue from then lasts; reports from before the run weigh it at once.
  const options = {
    capacities: [1, 0.25],
    service: parseServiceTime("exp:20ms"),
    policy: "weighted_round_robin",
    requests: 2_000,
  };
  const cold = run(options);
  const steady = run({ ...options, steadyStart: true });
  assert.ok(cold.servers[1].share > steady.servers[1].share + 0.02, "share of the 0.25 server");
  near(steady.servers[1].share, 0.2, 0.15, "steady share of the 0.25 server");
  assert.ok(
    steady.latencyMs.p99 * 2 < cold.latencyMs.p99,
    `p99: steady ${steady.latencyMs.p99}, cold ${cold.latencyMs.p99}`,
  );
});

Deno.test("simulate(): holders that prepare at their next pick match holders that prepare at once", () => {
  // Reports outnumber each holder's picks, so most snapshots are never picked from. Every
  // policy but weighted_round_robin (whose scheduler draws a random start in prepare) is the same
  // to the last digit; that one only in distribution.
  const options = {
    capacities: Array.from({ length: 50 }, (_, i) => [1, 0.5, 0.25][i % 3]),
    service: parseServiceTime("exp:20ms"),
    load: 0.7,
    requests: 10_000,
    clients: 20,
    reportIntervalMs: 50,
  };
  for (const policy of POLICY_NAMES.filter((p) => p !== "weighted_round_robin")) {
    for (const [mode, balancers] of [["lookaside", 3], ["watch", 2]] as const) {
      const settings = { ...DEFAULTS, ...options, policy, mode, balancers, service: "exp:20ms" };
      assert.equal(
        simJson(settings, run({ ...options, policy, mode, balancers })),
        simJson(settings, run({ ...options, policy, mode, balancers, eagerPrepare: true })),
        `${policy} ${mode}`,
      );
    }
  }
});

Deno.test("simulate(): policies that read no report give the same latency at every interval", () => {
  const options = {
    capacities: [1, 1, 0.5, 0.25],
    service: parseServiceTime("exp:20ms"),
    load: 0.3,
    requests: 20_000,
    clients: 20,
  };
  for (const policy of ["round_robin", "pick_first", "consistent_hash"]) {
    for (const mode of ["lookaside", "watch"] as const) {
      const at = (reportIntervalMs: number) =>
        run({ ...options, policy, mode, reportIntervalMs }).latencyMs;
      assert.deepEqual(at(100), at(5_000), `${policy} ${mode}`);
    }
  }
});

Deno.test("PolicyDriver prepares once for the changes since its last pick, or at once if eager", () => {
  const prepared: number[] = [];
  const policy: Policy<number> = {
    name: "counting",
    prepare: (_snapshot, context) => {
      prepared.push(context?.nowMs ?? NaN);
      return 0;
    },
    pick: (snapshot) => snapshot.picks[0],
  };
  const views = (): ServerView[] =>
    [0, 1].map((id) => ({ id, address: `s${id}`, load: undefined, addedAtMs: 0 }));
  const holder = (eager: boolean) => {
    const feed = new SnapshotFeed(views());
    const driver = new PolicyDriver(
      policy as Policy<unknown>,
      feed,
      0,
      Math.random,
      1,
      ["c"],
      eager,
    );
    const report = (index: number, atMs: number) => {
      feed.set(index, { ...views()[index], addedAtMs: atMs }, atMs);
      driver.update(atMs);
    };
    prepared.length = 0;
    return { feed, driver, report };
  };
  const eager = holder(true);
  eager.report(0, 10);
  eager.report(1, 20);
  assert.deepEqual(prepared, [10, 20], "eager: a prepare per change");
  const lazy = holder(false);
  lazy.report(0, 10);
  lazy.report(1, 20);
  lazy.driver.pick(0, 30);
  lazy.driver.pick(0, 31);
  assert.deepEqual(prepared, [20], "lazy: one prepare, at the last change");
  // The feed built one snapshot for both changes.
  assert.equal(lazy.feed.snapshot.version, 2);
  lazy.driver.refresh(40);
  lazy.report(0, 35);
  lazy.driver.pick(0, 50);
  assert.deepEqual(prepared, [20, 40], "lazy: a refresh after the change prepares at the refresh");
});

Deno.test("EventQueue pops by time, and events at the same time in insertion order", () => {
  const queue = new EventQueue(2);
  const times = [5, 1, 3, 1, 5, 0, 3, 1];
  times.forEach((time, i) => queue.push(time, 0, i));
  const popped: number[] = [];
  while (queue.pop()) popped.push(queue.payload);
  assert.deepEqual(popped, [5, 1, 3, 7, 2, 6, 0, 4]);
});

Deno.test("parseSimFlags() reads the flags and names the flag and what it accepts when bad", () => {
  const config = parseSimFlags(["--capacities", "1,1,0.25", "--policy", "oracle", "--json"]);
  assert.ok(config !== "help");
  assert.deepEqual(config.options.capacities, [1, 1, 0.25]);
  assert.equal(config.options.policy, "oracle");
  assert.equal(config.json, true);
  const five = parseSimFlags(["--servers", "5"]);
  assert.ok(five !== "help");
  assert.deepEqual(five.options.capacities, [1, 1, 1, 1, 1]);
  const noisy = parseSimFlags([
    "--servers",
    "3",
    "--capacity-schedule",
    "2=0s:1,20s:0.3; 0=0s:0.5",
  ]);
  assert.ok(noisy !== "help");
  assert.deepEqual(noisy.options.schedules, [
    [{ atMs: 0, capacity: 0.5 }],
    undefined,
    [{ atMs: 0, capacity: 1 }, { atMs: 20_000, capacity: 0.3 }],
  ]);
  const bad: [string[], string][] = [
    [["--servers", "0"], "'--servers' must be an integer from 1"],
    [
      ["--capacities", "1,0"],
      "'--capacities' must be comma-separated numbers above 0 and at most 1",
    ],
    [["--servers", "2", "--capacities", "1"], "'--capacities' must have one factor per server"],
    [["--service", "exp"], "'--service' must be fixed:T | exp:MEAN"],
    [["--load", "0"], "'--load' must be a number from 0.001 to 10"],
    [["--policy", "rr"], "'--policy' must be one of round_robin"],
    [["--mode", "push"], "'--mode' must be one of lookaside, watch"],
    [["--report-interval-ms", "x"], "'--report-interval-ms' must be a number"],
    [["--servers", "2", "--capacity-schedule", "2=0s:1"], "(there is no server 2)"],
    [["--capacity-schedule", "1=0s:1;1=0s:1"], "(server 1 is given twice)"],
    [["--capacity-schedule", "0=5s:1"], "'--capacity-schedule' must be I=SPEC;..."],
    [["--capacity-schedule", "0:0s:1"], "('0:0s:1' is not I=SPEC)"],
  ];
  for (const [args, message] of bad) {
    assert.throws(
      () => parseSimFlags(args),
      (error) => error instanceof UsageError && error.message.includes(message),
      args.join(" "),
    );
  }
});
