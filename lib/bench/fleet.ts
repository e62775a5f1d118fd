/**
 * A fleet of lightweight backends in one process, for the benchmark's `scale` scenario: `count`
 * grpc-js servers on free ports of 127.0.0.1, each serving `grpc.health.v1.Health` (SERVING) and
 * the real `Backend` service (SIMPLE at once, CPU_HEAVY on one worker shared by the fleet), each
 * registered in etcd under `prefix + address` by its own {@linkcode EtcdRegistration}.
 *
 * Each key has its own lease, as a real backend's does: the etcd side then carries what a fleet
 * of real backends would (one lease and one keepalive per server), and a key goes when its
 * server's registration stops, independently of the others. A shared lease would be cheaper for
 * etcd but would make every key of the fleet live and die together, which real backends do not.
 *
 * With `--churn N`, it then registers one more server and deregisters it again, N times, one
 * step every `--churn-interval-ms`, and prints each step as a JSON line on stdout with its start
 * time on the wall clock (`atMs`, ms since the epoch with a fraction, so another process on this
 * machine can time what follows) and how long etcd took (`etcdMs`: lease grant and put, or
 * delete and revoke). A deregistered server keeps serving for one more interval, so the balancer
 * drops it for its etcd delete, not for a failed health check. Lines:
 *
 * - `{"ready":N,"addresses":[...]}` once every server of `--count` is registered;
 * - `{"event":"register"|"deregister","address","atMs","etcdMs"}` per churn step;
 * - `{"churnDone":true}` after the last one.
 *
 * Run as `deno run <balancer permissions> lib/bench/fleet.ts --etcd URL --etcd-prefix P --count N`.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import type { Etcd3 } from "etcd3";
import { BACKEND_SERVICE_NAME } from "../backend/backend_process.ts";
import { createBackendHandlers } from "../backend/backend_service.ts";
import { createEtcdClient } from "../etcd/etcd_client.ts";
import { DEFAULT_LEASE_TTL_S } from "../etcd/etcd_layout.ts";
import { EtcdRegistration } from "../etcd/etcd_registration.ts";
import {
  etcdFlag,
  intFlag,
  onShutdownSignal,
  parseFlags,
  runMain,
  UsageError,
} from "../runtime/flags.ts";
import { HealthService } from "../wire/grpc_health.ts";
import { contract } from "../wire/proto.ts";
import { bindServer, createServer, shutdownServer } from "../wire/grpc_server.ts";
import { WorkerPool } from "../backend/worker_pool.ts";

const PROGRAM = "fleet";
/** Registrations in flight while the fleet starts. */
const START_CONCURRENCY = 50;

/** One server of the fleet. */
interface Member {
  address: string;
  server: grpc.Server;
  health: HealthService;
  registration: EtcdRegistration;
}

/** Options of {@linkcode Fleet}. */
export interface FleetOptions {
  etcd: Etcd3;
  prefix: string;
  ttlS: number;
}

/** Serves and registers lightweight backends. */
export class Fleet {
  #options: FleetOptions;
  #pool = new WorkerPool(1);
  #members = new Set<Member>();

  /** Creates an empty fleet. */
  constructor(options: FleetOptions) {
    this.#options = options;
  }

  /** Addresses of the servers serving now (registered or not). */
  get addresses(): string[] {
    return [...this.#members].map((m) => m.address);
  }

  /** Starts a server on a free port; it is registered by {@linkcode register}. */
  async serve(): Promise<Member> {
    const server = createServer();
    const health = new HealthService(["", BACKEND_SERVICE_NAME], "SERVING");
    health.addTo(server);
    const port = await bindServer(server, "127.0.0.1", 0);
    const address = `127.0.0.1:${port}`;
    server.addService(
      contract.Backend.service,
      createBackendHandlers({
        address,
        pool: this.#pool,
        workUnits: 1,
        draining: () => false,
        counters: { simple: 0, heavy: 0, failed: 0 },
      }),
    );
    const registration = new EtcdRegistration({
      client: this.#options.etcd,
      prefix: this.#options.prefix,
      address,
      ttlS: this.#options.ttlS,
      value: JSON.stringify({ address }),
    });
    const member = { address, server, health, registration };
    this.#members.add(member);
    return member;
  }

  /** Registers `member` in etcd; resolves with the ms it took (lease grant and put). */
  async register(member: Member): Promise<number> {
    const t0 = performance.now();
    await member.registration.start();
    return performance.now() - t0;
  }

  /** Deletes `member`'s key and revokes its lease; resolves with the ms it took. */
  async deregister(member: Member): Promise<number> {
    const t0 = performance.now();
    await member.registration.stop();
    return performance.now() - t0;
  }

  /** Deregisters `member` (if it still is) and stops its server. */
  async remove(member: Member): Promise<void> {
    this.#members.delete(member);
    await member.registration.stop();
    member.health.close();
    await shutdownServer(member.server, 1_000);
  }

  /** Starts and registers `count` servers, `START_CONCURRENCY` at a time. */
  async grow(count: number): Promise<void> {
    let left = count;
    const worker = async () => {
      while (left > 0) {
        left--;
        await this.register(await this.serve());
      }
    };
    await Promise.all(Array.from({ length: Math.min(START_CONCURRENCY, count) }, worker));
  }

  /** Deregisters and stops every server. */
  async stop(): Promise<void> {
    await Promise.all([...this.#members].map((m) => this.remove(m)));
    this.#pool.close();
  }
}

/** Wall-clock time in ms since the epoch, with a fraction. */
function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

function print(line: Record<string, unknown>): void {
  console.log(JSON.stringify(line));
}

/** Registers one more server and deregisters it again, `cycles` times, a step per interval. */
async function churn(fleet: Fleet, cycles: number, intervalMs: number): Promise<void> {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < cycles; i++) {
    const member = await fleet.serve();
    const registeredAt = wallMs();
    const putMs = await fleet.register(member);
    print({ event: "register", address: member.address, atMs: registeredAt, etcdMs: putMs });
    await sleep(intervalMs);
    const deregisteredAt = wallMs();
    const deleteMs = await fleet.deregister(member);
    print({ event: "deregister", address: member.address, atMs: deregisteredAt, etcdMs: deleteMs });
    await sleep(intervalMs);
    // Stopped only now, so the balancer dropped it for its etcd delete, not a failed check.
    fleet.remove(member).catch(() => {});
  }
  print({ churnDone: true });
}

if (import.meta.main) {
  await runMain(async () => {
    const flags = parseFlags(PROGRAM, Deno.args, {
      etcd: { type: "string", arg: "URL[,URL]", help: "etcd endpoints" },
      "etcd-prefix": { type: "string", arg: "PREFIX", help: "key prefix to register under" },
      count: { type: "string", arg: "N", help: "servers to serve and register" },
      "ttl-s": { type: "string", arg: "S", help: "lease TTL of each key" },
      churn: { type: "string", arg: "N", help: "then register and deregister one more, N times" },
      "churn-interval-ms": { type: "string", arg: "MS", help: "time between two churn steps" },
    });
    const endpoints = etcdFlag(PROGRAM, flags.etcd);
    const prefix = flags["etcd-prefix"];
    if (endpoints === undefined || prefix === undefined) {
      throw new UsageError(`Cannot start ${PROGRAM} as '--etcd' and '--etcd-prefix' are required`);
    }
    const etcd = createEtcdClient(endpoints);
    const fleet = new Fleet({
      etcd,
      prefix,
      ttlS: intFlag(PROGRAM, "ttl-s", flags["ttl-s"], DEFAULT_LEASE_TTL_S, 1, 3_600),
    });
    onShutdownSignal(async () => {
      await fleet.stop();
      etcd.close();
    });
    const count = intFlag(PROGRAM, "count", flags.count, 1, 0, 10_000);
    await fleet.grow(count);
    print({ ready: count, addresses: fleet.addresses });
    const cycles = intFlag(PROGRAM, "churn", flags.churn, 0, 0, 10_000);
    const intervalMs = intFlag(
      PROGRAM,
      "churn-interval-ms",
      flags["churn-interval-ms"],
      1_000,
      10,
      60_000,
    );
    if (cycles > 0) await churn(fleet, cycles, intervalMs);
  });
}
