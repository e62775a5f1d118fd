/**
 * The simulator's flags: their table (types, help, defaults, shown by `--help` and read by
 * {@linkcode parseSimFlags}), and their parsing into checked {@linkcode SimOptions}. Every flag
 * may also be set with its `LB_*` variable (`lib/runtime/flags.ts`).
 *
 * @module
 */
import { POLICY_NAMES } from "../../policies/mod.ts";
import {
  CAPACITY_SCHEDULE_FORM,
  type CapacitySchedule,
  parseCapacitySchedule,
} from "../backend/capacity_schedule.ts";
import { parseServiceTime, SERVICE_TIME_FORMS, type ServiceTime } from "../backend/service_time.ts";
import {
  FlagReader,
  type FlagSpecs,
  HELP_FLAG,
  parseFlags,
  usage,
  UsageError,
} from "../runtime/flags.ts";
import { SIM_POLICY_NAMES } from "./sim_policies.ts";
import { DEFAULT_SIM_REPORT_INTERVAL_MS, SIM_MODES, type SimOptions } from "./simulator.ts";

const PROGRAM = "simulate";

/** Every policy the simulator runs: the real ones, then the sim-only references. */
export const SIM_POLICIES: readonly string[] = [...POLICY_NAMES, ...SIM_POLICY_NAMES];

/** Most requests in one run (the simulator keeps a few numbers per request). */
const MAX_REQUESTS = 20_000_000;

/** The simulator's flags. */
export const SIM_FLAGS = {
  servers: {
    type: "string",
    arg: "N",
    help: "number of servers (default: the length of --capacities, else 3)",
  },
  capacities: {
    type: "string",
    arg: "LIST",
    help: "each server's capacity factor F, 0 < F <= 1, comma-separated, one per server; " +
      "service times are stretched by 1/F (default: 1 each)",
  },
  "capacity-schedule": {
    type: "string",
    arg: "I=SPEC;...",
    help: "server I's capacity over time since the start, in place of its --capacities factor " +
      `(which still sets the offered rate); SPEC is ${CAPACITY_SCHEDULE_FORM}; several servers ` +
      "separated by ';', e.g. '1=0s:1,20s:0.3,40s:1' (a noisy neighbour from 20 to 40 s)",
  },
  service: {
    type: "string",
    arg: "DIST",
    help: `service time at capacity 1: ${SERVICE_TIME_FORMS}`,
    default: "exp:20ms",
  },
  slots: { type: "string", arg: "C", help: "worker slots per server", default: 1 },
  load: {
    type: "string",
    arg: "RHO",
    help: "offered load as a share of the pool's capacity (sum of C × F / mean service time)",
    default: 0.85,
  },
  policy: { type: "string", arg: "NAME", help: SIM_POLICIES.join(" | "), default: "round_robin" },
  requests: { type: "string", arg: "N", help: "requests to send", default: 100_000 },
  warmup: {
    type: "string",
    arg: "SHARE",
    help: "share of the first requests left out of the figures",
    default: 0.1,
  },
  clients: { type: "string", arg: "K", help: "client ids the requests come from", default: 10 },
  mode: {
    type: "string",
    arg: "MODE",
    help: "lookaside (the balancer picks) | watch (each client picks from its own copy)",
    default: "lookaside",
  },
  balancers: {
    type: "string",
    arg: "B",
    help: "balancers, each with its own policy state; client k asks balancer k mod B",
    default: 1,
  },
  "report-interval-ms": {
    type: "string",
    arg: "MS",
    help: "how often each server reports its load",
    default: DEFAULT_SIM_REPORT_INTERVAL_MS,
  },
  seed: { type: "string", arg: "S", help: "seed of every random draw", default: 1 },
  "steady-start": {
    type: "boolean",
    help: "servers start with a report of their share of the offered load, as in the middle of " +
      "a long run: no policy starts blind, and weighted_round_robin's 10 s blackout is over " +
      "(default: no report yet, as a balancer that has just started)",
  },
  json: { type: "boolean", help: "print the result as one JSON object" },
  ...HELP_FLAG,
} as const satisfies FlagSpecs;

/** The simulator's `--help`. */
export const SIM_USAGE = usage({
  command: "deno task simulate [flags]",
  about:
    "Simulates clients, balancers and servers of chosen capacities, event by event, with the " +
    "real policies (and the sim-only oracle, jsq and random), and prints the latency and each " +
    "server's share. The same seed gives the same result.",
  examples: [
    "deno task simulate --capacities 1,1,0.25 --load 0.5 --policy least_load",
    "deno task simulate --servers 8 --load 0.9 --policy oracle --json",
    "deno task simulate --servers 20 --clients 40 --mode watch --balancers 2 --policy power_of_two",
    "deno task simulate --servers 2 --load 0.5 --policy least_load --capacity-schedule '1=0s:1,150s:0.3,300s:1'",
  ],
}, SIM_FLAGS);

/** The simulator's flags, checked. */
export interface SimConfig {
  options: SimOptions;
  /** The service time as given, for the report. */
  serviceText: string;
  json: boolean;
}

/**
 * Parses and checks the simulator's command line (and `LB_*` variables): `"help"` for `--help`,
 * else its config. A bad flag throws a {@linkcode UsageError} naming it.
 */
export function parseSimFlags(args: string[]): SimConfig | "help" {
  const flags = parseFlags(PROGRAM, args, SIM_FLAGS);
  if (flags.help) return "help";
  const read = new FlagReader(PROGRAM, SIM_FLAGS, flags);
  const given = read.int("servers", 1, 100_000);
  const capacities = capacitiesFlag(flags.capacities, given);
  const serviceText = read.string("service");
  const schedules = schedulesFlag(flags["capacity-schedule"], capacities.length);
  return {
    options: {
      capacities,
      ...(schedules ? { schedules } : {}),
      service: serviceFlag(serviceText),
      slots: read.int("slots", 1, 1_000),
      load: read.number("load", 0.001, 10),
      policy: read.choice("policy", SIM_POLICIES),
      requests: read.int("requests", 1, MAX_REQUESTS),
      warmup: read.number("warmup", 0, 0.9),
      clients: read.int("clients", 1, 100_000),
      mode: read.choice("mode", SIM_MODES),
      balancers: read.int("balancers", 1, 1_000),
      reportIntervalMs: read.number("report-interval-ms", 1, 3_600_000),
      seed: read.int("seed", 0, 0xffff_ffff),
      ...(read.boolean("steady-start") ? { steadyStart: true } : {}),
    },
    serviceText,
    json: read.boolean("json"),
  };
}

/** Reads `--service`: the message says what is wrong with it and what is accepted. */
function serviceFlag(value: string): ServiceTime {
  try {
    return parseServiceTime(value);
  } catch (error) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--service' must be ${SERVICE_TIME_FORMS}: current value is '${value}'`,
      { cause: error },
    );
  }
}

/** Reads `--capacities` against `--servers` (when given): one factor per server. */
function capacitiesFlag(value: string | undefined, servers: number | undefined): number[] {
  if (value === undefined) return Array.from({ length: servers ?? 3 }, () => 1);
  const factors = value.split(",").map((s) => s.trim() === "" ? NaN : Number(s));
  if (!factors.every((f) => f > 0 && f <= 1) || factors.length > 100_000) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--capacities' must be comma-separated numbers above 0 and at most 1: current value is '${value}'`,
    );
  }
  if (servers !== undefined && factors.length !== servers) {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--capacities' must have one factor per server (--servers ${servers}): current value is '${value}'`,
    );
  }
  return factors;
}

/**
 * Reads `--capacity-schedule` for `servers` servers: `I=SPEC` parts separated by `;`, each server
 * at most once; the others keep their `--capacities` factor.
 */
function schedulesFlag(
  value: string | undefined,
  servers: number,
): (CapacitySchedule | undefined)[] | undefined {
  if (value === undefined) return undefined;
  const schedules: (CapacitySchedule | undefined)[] = Array(servers).fill(undefined);
  const fail = (why: string): never => {
    throw new UsageError(
      `Cannot start ${PROGRAM} as '--capacity-schedule' must be I=SPEC;... with I a server ` +
        `index from 0 to ${servers - 1} given once and SPEC ${CAPACITY_SCHEDULE_FORM} ` +
        `(${why}): current value is '${value}'`,
    );
  };
  for (const part of value.split(";")) {
    const match = /^\s*(\d+)\s*=(.*)$/.exec(part);
    if (!match) fail(`'${part}' is not I=SPEC`);
    const index = Number(match![1]);
    if (index >= servers) fail(`there is no server ${index}`);
    if (schedules[index] !== undefined) fail(`server ${index} is given twice`);
    try {
      schedules[index] = parseCapacitySchedule(match![2]);
    } catch {
      fail(`'${match![2].trim()}' is not a schedule`);
    }
  }
  return schedules;
}
