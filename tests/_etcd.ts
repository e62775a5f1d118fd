/**
 * Test harness for integration tests against a real etcd: start and restart an `etcd` process on
 * free local ports, cut a client's connection with a TCP proxy while etcd stays up, and poll for
 * an outcome with a deadline.
 *
 * @module
 */

/** A running (or stopped) single-member etcd. */
export interface EtcdProcess {
  /** Client URL, `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** The data directory (its `etcd.log` holds etcd's own log). */
  readonly dataDir: string;
  /** Sends SIGTERM and waits for the exit; keeps the data dir. */
  stop(): Promise<void>;
  /** Starts again on the same ports and data dir, and waits until it answers. */
  start(): Promise<void>;
  /** Sends SIGKILL and waits for the exit; keeps the data dir. */
  kill(): Promise<void>;
  /** Freezes etcd (SIGSTOP): its ports still accept connections, but nothing answers. */
  pause(): void;
  /** Thaws etcd after {@linkcode pause} (SIGCONT). */
  resume(): void;
  /** Stops etcd and removes its data dir. */
  close(): Promise<void>;
}

/** How long {@linkcode startEtcd} waits for etcd to report healthy. */
export const ETCD_START_TIMEOUT_MS = 15_000;

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return Promise.resolve(port);
}

/**
 * Polls `fn` every 25 ms until it returns a truthy value, and returns that value.
 *
 * @throws {Error} `timed out after <timeoutMs>ms waiting for <what>` (with the last error thrown
 * by `fn`, if any, as `cause`).
 */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Options of {@linkcode startEtcd}. */
export interface StartEtcdOptions {
  /** Extra flags, such as `--grpc-keepalive-min-time=500ms`. */
  args?: string[];
}

/**
 * Starts `etcd` from the PATH on free ports of 127.0.0.1 with a fresh data dir, and resolves once
 * its `/health` endpoint answers.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdProcess> {
  const clientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "etcd-test-" });
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    "--name=default",
    `--data-dir=${dataDir}/data`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=default=${peerUrl}`,
    // etcd writes its log there instead of to our stderr; it is kept for post-mortems.
    "--logger=zap",
    `--log-outputs=${dataDir}/etcd.log`,
    ...options.args ?? [],
  ];
  let child: Deno.ChildProcess | undefined;

  const spawn = async () => {
    try {
      child = new Deno.Command("etcd", { args, stdin: "null", stdout: "null", stderr: "null" })
        .spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error("etcd not found on PATH; install Debian's etcd-server", { cause: error });
      }
      throw error;
    }
    const running = child;
    let exited = false;
    running.status.then(() => exited = true);
    try {
      await waitFor(`etcd at ${endpoint} to become healthy`, async () => {
        if (exited) throw new Error(`etcd exited early; see ${dataDir}/etcd.log`);
        return await isHealthy(endpoint);
      }, ETCD_START_TIMEOUT_MS);
    } catch (error) {
      await signal("SIGKILL");
      throw error;
    }
  };

  const signal = async (name: Deno.Signal) => {
    const running = child;
    if (running === undefined) return;
    child = undefined;
    try {
      running.kill(name);
      // A paused etcd would hold the signal until it is thawed.
      running.kill("SIGCONT");
    } catch {
      // Already exited.
    }
    await running.status;
  };

  await spawn().catch(async (error) => {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw error;
  });

  return {
    endpoint,
    dataDir,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    start: async () => {
      if (child !== undefined) throw new Error(`etcd at ${endpoint} is already running`);
      await spawn();
    },
    close: async () => {
      await signal("SIGTERM");
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

async function isHealthy(endpoint: string): Promise<boolean> {
  const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
  const body = await response.text();
  return response.ok && body.includes('"health":"true"');
}

/** A TCP proxy in front of etcd, so a test can cut one client off while etcd stays up. */
export interface TcpProxy {
  /** URL to give the client, `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** Closes every proxied connection and refuses new ones (accepts and closes at once). */
  cut(): void;
  /** Lets new connections through again. */
  restore(): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a TCP proxy on a free port of 127.0.0.1 that forwards to `target` (`http://host:port`). */
export function startTcpProxy(target: string): TcpProxy {
  const url = new URL(target);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const endpoint = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const open = new Set<Deno.Conn>();
  const pipes = new Set<Promise<void>>();
  let isCut = false;

  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };

  const forward = async (inbound: Deno.Conn) => {
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    } catch {
      closeQuietly(inbound);
      return;
    }
    if (isCut || !open.has(inbound)) {
      closeQuietly(inbound);
      outbound.close();
      return;
    }
    open.add(outbound);
    await Promise.allSettled([copy(inbound, outbound), copy(outbound, inbound)]);
    closeQuietly(inbound);
    closeQuietly(outbound);
  };

  const copy = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } finally {
      // Either side ending ends the pair, like a cut cable.
      closeQuietly(from);
      closeQuietly(to);
    }
  };

  const accepting = (async () => {
    for await (const inbound of listener) {
      if (isCut) {
        inbound.close();
        continue;
      }
      open.add(inbound);
      const pipe = forward(inbound).catch(() => {});
      pipes.add(pipe);
      pipe.finally(() => pipes.delete(pipe));
    }
  })().catch(() => {});

  const closeAll = () => {
    for (const conn of [...open]) closeQuietly(conn);
  };

  return {
    endpoint,
    cut: () => {
      isCut = true;
      closeAll();
    },
    restore: () => {
      isCut = false;
    },
    close: async () => {
      isCut = true;
      listener.close();
      closeAll();
      await accepting;
      await Promise.allSettled([...pipes]);
    },
  };
}
