/**
 * The policy registry: every policy selectable with `--policy`, by name, in one place, registered
 * explicitly (no import side effects). A policy added to {@linkcode POLICIES} joins the
 * conformance suite (`tests/policies_conformance_test.ts`) and the pick benchmark.
 *
 * @module
 */
import { consistentHash } from "./consistent_hash.ts";
import { leastLoad } from "./least_load.ts";
import { pickFirst } from "./pick_first.ts";
import { powerOfTwo } from "./power_of_two.ts";
import { prequal } from "./prequal.ts";
import { roundRobin } from "./round_robin.ts";
import { weightedRoundRobin } from "./weighted_round_robin.ts";
import type { Policy } from "./types.ts";

export * from "./types.ts";
export {
  consistentHash,
  leastLoad,
  pickFirst,
  powerOfTwo,
  prequal,
  roundRobin,
  weightedRoundRobin,
};

/** Factories of every policy, by `--policy` name. */
export const POLICIES = {
  round_robin: roundRobin,
  pick_first: pickFirst,
  least_load: leastLoad,
  power_of_two: powerOfTwo,
  weighted_round_robin: weightedRoundRobin,
  consistent_hash: consistentHash,
  prequal,
};

/** A name accepted by `--policy`. */
export type PolicyName = keyof typeof POLICIES;

/** Every policy name, in the order they are documented. */
export const POLICY_NAMES = Object.keys(POLICIES) as PolicyName[];

/** Whether `name` is one of {@linkcode POLICY_NAMES} (for names that come from outside). */
export function isPolicyName(name: string): name is PolicyName {
  return Object.hasOwn(POLICIES, name);
}

/** Creates the policy called `name` with its default options. */
export function createPolicy(name: PolicyName): Policy<unknown> {
  return POLICIES[name]() as Policy<unknown>;
}
