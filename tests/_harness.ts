/**
 * The harness of the system tests. A test starts everything it needs through one
 * {@linkcode TestSystem}: a throwaway etcd (or etcd cluster), balancers, backends, other entry
 * processes, gRPC and etcd clients, TCP proxies and loads; leaving the test's scope tears all of
 * it down.
 *
 * ```ts
 * await using sys = await startSystem({ etcd: true });
 * const balancer = await sys.balancer(sys.onEtcd("--policy", "round_robin"));
 * const lb = sys.lbClient(balancer.address);
 * const backend = sys.backend(sys.onEtcd());
 * await waitForServers(lb, [backend.address]);
 * ```
 *
 * It is built from `_system.ts` (waiting on the processes: `waitForServers` and the like, which
 * tests import from there), `_etcd.ts` (the TCP proxy) and `_load.ts` (loads that run until
 * stopped).
 *
 * @module
 */
import type { ChannelCredentials, ClientOptions } from "@grpc/grpc-js";
import type { Etcd3 } from "etcd3";
import { createEtcdClient, type EtcdClientOptions } from "../lib/etcd/etcd_client.ts";
import {
  type EntryName,
  type EntryProcess,
  spawnEntry,
  type SpawnEntryOptions,
} from "../lib/harness/entry_process.ts";
import type { LoadRunOptions } from "../lib/client/load_run.ts";
import { TaskClient, type TaskClientOptions } from "../lib/client/task_client.ts";
import {
  type BackendClient,
  createBackendClient,
  createLoadBalancerClient,
  type LoadBalancerClient,
  type LoadBalancerPackage,
} from "../lib/wire/proto.ts";
import {
  type EtcdCluster,
  type EtcdProcess,
  startEtcd,
  startEtcdCluster,
  type StartEtcdClusterOptions,
  type StartEtcdOptions,
} from "../lib/harness/etcd_process.ts";
import { startTcpProxy, type TcpProxy } from "./_etcd.ts";
import { type Load, startLoad, TimedClient } from "./_load.ts";
import { freePort, type Started, waitForBalancer, waitForServers } from "./_system.ts";

/** How long a process is given to exit on SIGTERM at teardown before SIGKILL. */
const STOP_GRACE_MS = 5_000;

/** Options of {@linkcode startSystem}. */
export interface SystemOptions {
  /** Start a throwaway etcd: `true`, or the options to start it with. @default {none} */
  etcd?: true | StartEtcdOptions;
  /** Start a throwaway etcd cluster with these options (instead of `etcd`). @default {none} */
  etcdCluster?: StartEtcdClusterOptions;
}

/** Options of {@linkcode TestSystem.balancer}. */
export interface BalancerOptions {
  /** Its port, for a balancer started again on the port of one that stopped. @default {free} */
  port?: number;
  /** Environment variables, such as an `LB_*` variable in place of a flag. @default {none} */
  env?: Record<string, string>;
  /** How to ask it whether it answers: TLS credentials, and channel options (a token). */
  credentials?: ChannelCredentials;
  clientOptions?: ClientOptions;
}

/** Options of {@linkcode TestSystem.balancerWithBackends}. */
export interface BalancerWithBackendsOptions extends BalancerOptions {
  /** The balancer's flags. */
  balancerArgs?: string[];
  /** How many backends. @default {1} */
  backends?: number;
  /** Every backend's flags after `--balancer <the balancer>`. */
  backendArgs?: string[];
  /** Wait until each backend has also reported its load. @default {false} */
  withLoad?: boolean;
  /** How long to wait for the backends. @default {15_000} */
  timeoutMs?: number;
}

/** Options of a gRPC client of {@linkcode TestSystem}. */
export interface ChannelOptions {
  /** @default {plaintext} */
  credentials?: ChannelCredentials;
  /** Stubs from another definition, such as the original contract. @default {ours} */
  contract?: LoadBalancerPackage;
  /** Channel options, such as `withToken`'s interceptor. */
  channelOptions?: ClientOptions;
}

/** Starts a system, with the etcd `options` ask for (none by default): a {@linkcode TestSystem}. */
export async function startSystem(options: SystemOptions = {}): Promise<TestSystem> {
  if (options.etcd && options.etcdCluster) {
    throw new TypeError("Cannot start a system with both 'etcd' and 'etcdCluster'");
  }
  const etcd = options.etcd
    ? await startEtcd(options.etcd === true ? {} : options.etcd)
    : undefined;
  const cluster = options.etcdCluster ? await startEtcdCluster(options.etcdCluster) : undefined;
  return new TestSystem(etcd, cluster);
}

/**
 * Everything one test started, torn down by `await using` (or {@linkcode TestSystem.close}) in a
 * fixed order: loads stop; clients and what was given to {@linkcode defer} close, the last
 * first; every process is stopped at once (SIGTERM, SIGKILL after 5 s); proxies close; etcd
 * goes last. A failure in one step does not skip the others; the first is thrown at the end.
 */
export class TestSystem implements AsyncDisposable {
  readonly #etcd: EtcdProcess | undefined;
  readonly #cluster: EtcdCluster | undefined;
  readonly #loads: Load[] = [];
  readonly #closers: (() => unknown)[] = [];
  readonly #processes: EntryProcess[] = [];
  readonly #proxies: TcpProxy[] = [];
  #closing: Promise<void> | undefined;

  /** Use {@linkcode startSystem}, which starts etcd first when asked. */
  constructor(etcd?: EtcdProcess, cluster?: EtcdCluster) {
    this.#etcd = etcd;
    this.#cluster = cluster;
  }

  /** The system's etcd; throws if it was started without one. */
  get etcd(): EtcdProcess {
    if (this.#etcd === undefined) {
      throw new Error("This test system has no etcd: start it with startSystem({ etcd: true })");
    }
    return this.#etcd;
  }

  /** The system's etcd cluster; throws if it was started without one. */
  get etcdCluster(): EtcdCluster {
    if (this.#cluster === undefined) {
      throw new Error(
        "This test system has no etcd cluster: start it with startSystem({ etcdCluster: {} })",
      );
    }
    return this.#cluster;
  }

  /** The client URLs of the system's etcd, or of every member of its cluster. */
  get etcdEndpoints(): string[] {
    return this.#cluster ? this.#cluster.endpoints : [this.etcd.endpoint];
  }

  /** `--etcd <the system's etcd>` then `args`: the flags of an entry on this etcd. */
  onEtcd(...args: string[]): string[] {
    return ["--etcd", this.etcdEndpoints.join(","), ...args];
  }

  /**
   * Starts a balancer (debug logs, a free port unless `options.port`) and waits until it
   * answers `ListServers`.
   */
  async balancer(args: string[] = [], options: BalancerOptions = {}): Promise<Started> {
    const port = options.port ?? freePort();
    const process = this.spawn(
      "balancer",
      ["--port", String(port), "--log-level", "debug", ...args],
      { env: options.env },
    );
    const balancer = { address: `127.0.0.1:${port}`, port, process };
    await waitForBalancer(balancer, options.credentials, options.clientOptions);
    return balancer;
  }

  /**
   * Starts a balancer, backends reporting to it (built-in discovery) and a client of it (asking
   * with the balancer's `credentials` and `clientOptions`), and waits until it lists every
   * backend, healthy.
   */
  async balancerWithBackends(
    options: BalancerWithBackendsOptions = {},
  ): Promise<{ balancer: Started; backends: Started[]; lb: LoadBalancerClient }> {
    const balancer = await this.balancer(options.balancerArgs, options);
    const backends = Array.from(
      { length: options.backends ?? 1 },
      () => this.backend(["--balancer", balancer.address, ...options.backendArgs ?? []]),
    );
    const lb = this.lbClient(balancer.address, {
      credentials: options.credentials,
      channelOptions: options.clientOptions,
    });
    const addresses = backends.map((b) => b.address);
    await waitForServers(lb, addresses, options.timeoutMs ?? 15_000, options.withLoad ?? false);
    return { balancer, backends, lb };
  }

  /**
   * Starts a backend (load reports every 200 ms, CPU-heavy tasks of one work unit, debug logs, a
   * free port) with `args` (give it `--balancer` or `--etcd`).
   */
  backend(args: string[] = []): Started {
    const port = freePort();
    const process = this.spawn("backend", [
      "--port",
      String(port),
      "--report-interval-ms",
      "200",
      "--work-units",
      "1",
      "--log-level",
      "debug",
      ...args,
    ]);
    return { address: `127.0.0.1:${port}`, port, process };
  }

  /** Starts `entry` with `args` as it is (a client run, a bundle, a balancer not waited for). */
  spawn(entry: EntryName, args: string[], options?: SpawnEntryOptions): EntryProcess {
    const process = spawnEntry(entry, args, options);
    this.#processes.push(process);
    return process;
  }

  /** A `LoadBalancer` client of `address`. */
  lbClient(address: string, options: ChannelOptions = {}): LoadBalancerClient {
    const { credentials, contract, channelOptions } = options;
    return this.#closes(createLoadBalancerClient(address, credentials, contract, channelOptions));
  }

  /** A `Backend` client of `address`. */
  backendClient(address: string, options: ChannelOptions = {}): BackendClient {
    const { credentials, contract, channelOptions } = options;
    return this.#closes(createBackendClient(address, credentials, contract, channelOptions));
  }

  /** A task client (lookaside by default). */
  taskClient(options: TaskClientOptions): TaskClient {
    return this.#closes(new TaskClient(options));
  }

  /** A task client that records when each task ended and how (`_load.ts`). */
  timedClient(options: TaskClientOptions): TimedClient {
    return this.#closes(new TimedClient(options));
  }

  /** An etcd client of `endpoints` (the system's etcd by default). */
  etcdClient(endpoints: string[] = this.etcdEndpoints, options?: EtcdClientOptions): Etcd3 {
    return this.#closes(createEtcdClient(endpoints, options));
  }

  /** A TCP proxy to `target` (the system's etcd by default), to cut one client off. */
  proxy(target: string = this.etcd.endpoint): TcpProxy {
    const proxy = startTcpProxy(target);
    this.#proxies.push(proxy);
    return proxy;
  }

  /** A load that runs until stopped (`_load.ts`), stopped at teardown if the test did not. */
  load(options: Omit<LoadRunOptions, "durationMs" | "requests">): Load {
    const load = startLoad(options);
    this.#loads.push(load);
    return load;
  }

  /** Runs `close` at teardown, with the clients, before any process is stopped. */
  defer(close: () => unknown): void {
    this.#closers.push(close);
  }

  /**
   * Tears everything down (once: later calls, and `await using` at the end of the scope, wait
   * for the same teardown). For a test that checks what the processes did up to their exit.
   */
  close(): Promise<void> {
    this.#closing ??= this.#tearDown();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #tearDown(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (step: () => unknown) => {
      try {
        await step();
      } catch (error) {
        errors.push(error);
      }
    };
    await attempt(() => Promise.all(this.#loads.map((load) => load.stop())));
    for (const close of [...this.#closers].reverse()) await attempt(close);
    await attempt(() => Promise.all(this.#processes.map((p) => p.stop(STOP_GRACE_MS))));
    await attempt(() => Promise.all(this.#proxies.map((proxy) => proxy.close())));
    await attempt(() => this.#etcd?.close());
    await attempt(() => this.#cluster?.close());
    if (errors.length > 0) throw errors[0];
  }

  #closes<T extends { close(): unknown }>(resource: T): T {
    this.#closers.push(() => resource.close());
    return resource;
  }
}
