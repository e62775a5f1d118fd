/**
 * `consistent_hash`: the same client id lands on the same server, and when a server joins or
 * leaves only the clients of that server move. It is a ring hash (Envoy's `ring_hash`, gRFC A42)
 * rather than Maglev, whose table fill also moves clients between servers that stayed; and every
 * server puts the same number of points on the ring whatever the number of servers (as ketama
 * does, unlike A42's ring sized as a whole), for the same reason, at the cost of memory.
 *
 * @module
 */
import { NO_SERVERS, type Policy, type ServerView } from "./types.ts";

/** Default number of points each server puts on the ring. */
export const DEFAULT_POINTS_PER_SERVER = 128;
/** Default and upper bound of the most points on the ring (gRFC A42's `max_ring_size`). */
export const DEFAULT_MAX_RING_SIZE = 8_388_608;

/** Options of {@linkcode consistentHash}. */
export interface ConsistentHashOptions {
  /**
   * Points each server puts on the ring: more spread clients more evenly, at the cost of memory
   * and of a longer build when membership changes. An integer from 1 to 65,536.
   * @default {DEFAULT_POINTS_PER_SERVER}
   */
  pointsPerServer?: number;
  /**
   * Most points on the ring in all, which caps the memory with very many servers. An integer
   * from 1 to {@linkcode DEFAULT_MAX_RING_SIZE}.
   * @default {DEFAULT_MAX_RING_SIZE}
   */
  maxRingSize?: number;
}

/** State of {@linkcode consistentHash}: read-only on the pick path. */
export interface ConsistentHashState {
  /** Ring points, ascending. Shared by every state of the same membership; never mutated. */
  readonly points: Uint32Array;
  /** `owners[j]`: index in `snapshot.servers` of the server owning `points[j]`. */
  readonly owners: Uint32Array;
  /** `addresses[i]`: address of `snapshot.servers[i]` when this state was prepared. */
  readonly addresses: readonly string[];
}

/**
 * Creates the consistent hash policy. A client id (an empty one too) hashes to a 32-bit value
 * and goes to the owner of the first ring point at or after it, wrapping to the first point.
 */
export function consistentHash(options: ConsistentHashOptions = {}): Policy<ConsistentHashState> {
  const pointsPerServer = options.pointsPerServer ?? DEFAULT_POINTS_PER_SERVER;
  const maxRingSize = options.maxRingSize ?? DEFAULT_MAX_RING_SIZE;
  if (!Number.isInteger(pointsPerServer) || pointsPerServer < 1 || pointsPerServer > 65_536) {
    throw new RangeError(
      `Cannot create consistent_hash as 'pointsPerServer' must be an integer from 1 to 65536: current value is ${pointsPerServer}`,
    );
  }
  if (!Number.isInteger(maxRingSize) || maxRingSize < 1 || maxRingSize > DEFAULT_MAX_RING_SIZE) {
    throw new RangeError(
      `Cannot create consistent_hash as 'maxRingSize' must be an integer from 1 to ${DEFAULT_MAX_RING_SIZE}: current value is ${maxRingSize}`,
    );
  }
  return {
    name: "consistent_hash",
    prepare(snapshot, context) {
      const previous = context?.previous;
      if (previous !== undefined) {
        if (context?.previousSnapshot === snapshot) return previous;
        const kept = carryOver(snapshot.servers, previous);
        if (kept !== undefined) return kept;
      }
      return buildRing(snapshot.servers, pointsPerServer, maxRingSize);
    },
    pick(snapshot, state, context) {
      const points = state.points;
      if (snapshot.servers.length === 0 || points.length === 0) return NO_SERVERS;
      const hash = hashString(context.clientId);
      // First point at or after the hash; past the last point the ring wraps to the first.
      let lo = 0;
      let hi = points.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (points[mid] < hash) lo = mid + 1;
        else hi = mid;
      }
      return snapshot.picks[state.owners[lo === points.length ? 0 : lo]];
    },
  };
}

/** Points each of `n` servers puts on the ring: `pointsPerServer`, or fewer if the cap binds. */
function virtualNodes(n: number, pointsPerServer: number, maxRingSize: number): number {
  if (n <= 0) return 0;
  return Math.max(1, Math.min(pointsPerServer, Math.floor(maxRingSize / n)));
}

/**
 * Slow path: the previous state when the addresses are the same (a load report, a timer
 * refresh), with only its owner indices remapped when they come in another order (a server
 * re-registered with a new id).
 */
function carryOver(
  servers: readonly ServerView[],
  previous: ConsistentHashState,
): ConsistentHashState | undefined {
  const before = previous.addresses;
  const n = servers.length;
  if (before.length !== n) return undefined;
  let i = 0;
  while (i < n && servers[i].address === before[i]) i++;
  if (i === n) return previous;
  // Same set in another order? Map each old index to the new index of its address.
  const newIndex = new Map<string, number>();
  for (let j = 0; j < n; j++) newIndex.set(servers[j].address, j);
  if (newIndex.size !== n) return undefined; // duplicate addresses: rebuild from scratch
  const moved = new Uint32Array(n);
  for (let j = 0; j < n; j++) {
    const index = newIndex.get(before[j]);
    if (index === undefined) return undefined;
    moved[j] = index;
  }
  const owners = previous.owners.map((old) => moved[old]);
  return { points: previous.points, owners, addresses: servers.map((s) => s.address) };
}

/**
 * Slow path: the ring for `servers`, built from their addresses alone. Point `k` of a server
 * hashes its address and `k`, never its id, so balancers with the same servers build the same
 * ring and a server that leaves and returns gets its old points (and clients) back.
 */
function buildRing(
  servers: readonly ServerView[],
  pointsPerServer: number,
  maxRingSize: number,
): ConsistentHashState {
  const n = servers.length;
  const addresses = servers.map((s) => s.address);
  const perServer = virtualNodes(n, pointsPerServer, maxRingSize);
  // Servers in address order (then index, for duplicate addresses), so that the stable sort
  // below breaks ties between equal points by address, whatever order the ids give.
  const byAddress = Array.from({ length: n }, (_, i) => i).sort((a, b) =>
    addresses[a] < addresses[b] ? -1 : addresses[a] > addresses[b] ? 1 : a - b
  );
  const size = n * perServer;
  const points = new Uint32Array(size);
  const owners = new Uint32Array(size);
  let j = 0;
  for (const index of byAddress) {
    const base = hashString(addresses[index]);
    for (let k = 0; k < perServer; k++, j++) {
      points[j] = pointHash(base, k);
      owners[j] = index;
    }
  }
  sortByPoint(points, owners);
  return { points, owners, addresses };
}

/**
 * Sorts `points` ascending and moves `owners` along, stably (equal points keep their order): an
 * LSD radix sort in two passes of 16 bits, faster than a comparator sort, which matters because
 * every membership change (a health ejection too) rebuilds the ring.
 */
function sortByPoint(points: Uint32Array, owners: Uint32Array): void {
  let fromPoints: Uint32Array = points;
  let fromOwners: Uint32Array = owners;
  let toPoints: Uint32Array = new Uint32Array(points.length);
  let toOwners: Uint32Array = new Uint32Array(points.length);
  const counts = new Uint32Array(65_537);
  for (const shift of [0, 16]) {
    counts.fill(0);
    for (let i = 0; i < fromPoints.length; i++) counts[((fromPoints[i] >>> shift) & 0xffff) + 1]++;
    for (let d = 1; d < counts.length; d++) counts[d] += counts[d - 1];
    for (let i = 0; i < fromPoints.length; i++) {
      const at = counts[(fromPoints[i] >>> shift) & 0xffff]++;
      toPoints[at] = fromPoints[i];
      toOwners[at] = fromOwners[i];
    }
    [fromPoints, toPoints] = [toPoints, fromPoints];
    [fromOwners, toOwners] = [toOwners, fromOwners];
  }
  // Two passes: the sorted data is back in `points` and `owners`.
}

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** 2^32 / golden ratio: consecutive multiples are far apart, so point `k` differs from `k + 1`. */
const GOLDEN_GAMMA = 0x9e3779b9;

/** FNV-1a over the UTF-16 code units of `s`, then murmur3's finaliser: allocation-free. */
function hashString(s: string): number {
  let h = FNV_OFFSET_BASIS;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return fmix32(h);
}

/** Point `k` of a server whose address hashes to `base`: distinct for distinct `k`. */
function pointHash(base: number, k: number): number {
  return fmix32((base + Math.imul(k, GOLDEN_GAMMA)) | 0);
}

/** Murmur3's 32-bit finaliser: every input bit flips about half the output bits. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
