/**
 * A throwaway single-member etcd: started from the PATH on free ports of 127.0.0.1 with a fresh
 * data dir, for the tests, the demo's `--discovery etcd` and the benchmark. Optionally it serves
 * clients over TLS (and requires client certificates), and has auth enabled with a `root` user.
 *
 * @module
 */
import { freePort } from "./ports.ts";
import { waitFor } from "./wait.ts";

/** A running (or stopped) single-member etcd. */
export interface EtcdProcess {
  /** Client URL, `http://127.0.0.1:<port>` (`https://` with TLS). */
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

/** Options of {@linkcode startEtcd}. */
export interface StartEtcdOptions {
  /** Extra flags, such as `--grpc-keepalive-min-time=500ms`. */
  args?: string[];
  /** Parent folder of the data dir. @default {the system's temporary folder} */
  parentDir?: string;
  /** Serve clients over TLS only. @default {plain HTTP} */
  tls?: EtcdTlsFiles;
  /**
   * Enable auth once started, with a `root` user (role `root`) of this password. Over TLS the
   * setup connects with `tls.certFile` and `tls.keyFile` as its client certificate.
   */
  rootPassword?: string;
}

/** PEM files of an etcd serving clients over TLS. */
export interface EtcdTlsFiles {
  /** CA that signed `certFile`, and that client certificates must be signed by. */
  caFile: string;
  /** etcd's certificate (SAN IP:127.0.0.1) and its key. */
  certFile: string;
  keyFile: string;
  /** Refuse clients without a certificate signed by `caFile` (`--client-cert-auth`). */
  clientCertAuth?: boolean;
}

/**
 * Starts `etcd` from the PATH on free ports of 127.0.0.1 with a fresh data dir, and resolves once
 * its `/health` endpoint answers.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdProcess> {
  const clientPort = freePort();
  const peerPort = freePort();
  if (options.parentDir) await Deno.mkdir(options.parentDir, { recursive: true });
  const dataDir = await Deno.makeTempDir({ prefix: "etcd-", dir: options.parentDir });
  const tls = options.tls;
  const endpoint = `${tls ? "https" : "http"}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  // Over TLS, /health is also served on a plain HTTP metrics port, so checking it needs no certs.
  const healthUrl = tls ? `http://127.0.0.1:${freePort()}` : endpoint;
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
    ...tls ? tlsArgs(tls, healthUrl) : [],
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
        return await isHealthy(healthUrl);
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

  const first = async () => {
    await spawn();
    if (options.rootPassword !== undefined) {
      await enableAuth(endpoint, options.rootPassword, tls);
    }
  };
  await first().catch(async (error) => {
    await signal("SIGKILL");
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

function tlsArgs(tls: EtcdTlsFiles, metricsUrl: string): string[] {
  // `--trusted-ca-file` alone makes etcd ask for an optional client certificate, and Deno's TLS
  // fails that handshake when it has none (BadCertificate): set it only when one is required.
  return [
    `--cert-file=${tls.certFile}`,
    `--key-file=${tls.keyFile}`,
    ...tls.clientCertAuth ? [`--trusted-ca-file=${tls.caFile}`, "--client-cert-auth"] : [],
    `--listen-metrics-urls=${metricsUrl}`,
  ];
}

/** Adds user `root` with role `root`, then turns auth on (etcd refuses it without a root). */
async function enableAuth(endpoint: string, password: string, tls?: EtcdTlsFiles): Promise<void> {
  // Loaded here so that the demo and the benchmark, which never enable auth, do not need etcd3.
  const { createEtcdClient } = await import("./etcd.ts");
  const read = (path: string) => Deno.readTextFile(path);
  const client = createEtcdClient([endpoint], {
    security: tls && {
      tls: {
        caPem: await read(tls.caFile),
        certPem: await read(tls.certFile),
        keyPem: await read(tls.keyFile),
      },
    },
  });
  try {
    await client.auth.userAdd({ name: "root", password });
    await client.auth.userGrantRole({ user: "root", role: "root" });
    await client.auth.authEnable();
  } finally {
    client.close();
  }
}

async function isHealthy(endpoint: string): Promise<boolean> {
  const response = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
  const body = await response.text();
  return response.ok && body.includes('"health":"true"');
}
