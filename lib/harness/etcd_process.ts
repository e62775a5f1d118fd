/**
 * A throwaway etcd: started from the PATH on free ports of 127.0.0.1 with a fresh data dir, for
 * the tests, the demo's `--discovery etcd` and the benchmark. A single member optionally serves
 * clients over TLS (and requires client certificates), and has auth enabled with a `root` user;
 * {@linkcode startEtcdCluster} runs several members as one cluster, for failover tests.
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
  if (options.parentDir) await Deno.mkdir(options.parentDir, { recursive: true });
  const dataDir = await Deno.makeTempDir({ prefix: "etcd-", dir: options.parentDir });
  const peerUrl = `http://127.0.0.1:${freePort()}`;
  const member = etcdMember({
    name: "default",
    dataDir,
    peerUrl,
    initialCluster: `default=${peerUrl}`,
    tls: options.tls,
    args: options.args,
  });
  const first = async () => {
    await member.start();
    if (options.rootPassword !== undefined) {
      await enableAuth(member.endpoint, options.rootPassword, options.tls);
    }
  };
  await first().catch(async (error) => {
    await member.signal("SIGKILL");
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw error;
  });
  return member;
}

/** A running etcd cluster of several members on 127.0.0.1. */
export interface EtcdCluster {
  /** Every member's client URL, in member order: what `--etcd` takes, comma-separated. */
  readonly endpoints: string[];
  /** The members, each with its own kill/stop/start (its `close` also removes its data dir). */
  readonly members: EtcdProcess[];
  /**
   * The member that is the Raft leader, as the running members report it (asked over etcd's
   * `/v3/maintenance/status`), or `undefined` while they know of none (an election).
   */
  leader(): Promise<EtcdProcess | undefined>;
  /** Kills every member and removes the data dirs. */
  close(): Promise<void>;
}

/** Options of {@linkcode startEtcdCluster}. */
export interface StartEtcdClusterOptions {
  /** How many members (3 tolerates one failure, 5 two). @default {3} */
  members?: number;
  /** Extra flags given to every member. */
  args?: string[];
  /** Parent folder of the cluster's folder (one data dir per member in it). */
  parentDir?: string;
}

/**
 * Starts a cluster of `members` etcd processes from the PATH (`--initial-cluster-state new`, peer
 * and client URLs on free ports of 127.0.0.1, a fresh data dir each), and resolves once every
 * member reports healthy, which etcd does only once a leader is elected. Plain HTTP only.
 */
export async function startEtcdCluster(
  options: StartEtcdClusterOptions = {},
): Promise<EtcdCluster> {
  const count = options.members ?? 3;
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(
      `Cannot start etcd cluster as 'members' must be an integer of at least 1: current value is '${count}'`,
    );
  }
  if (options.parentDir) await Deno.mkdir(options.parentDir, { recursive: true });
  const clusterDir = await Deno.makeTempDir({ prefix: "etcd-cluster-", dir: options.parentDir });
  const peers = Array.from({ length: count }, (_, i) => ({
    name: `member${i + 1}`,
    peerUrl: `http://127.0.0.1:${freePort()}`,
  }));
  const initialCluster = peers.map((p) => `${p.name}=${p.peerUrl}`).join(",");
  const members: Member[] = [];
  try {
    for (const peer of peers) {
      const dataDir = `${clusterDir}/${peer.name}`;
      await Deno.mkdir(dataDir);
      members.push(etcdMember({ ...peer, dataDir, initialCluster, args: options.args }));
    }
    // A member alone has no quorum and so is never healthy: launch them all, then wait.
    for (const member of members) member.launch();
    await Promise.all(members.map((member) => member.waitHealthy()));
  } catch (error) {
    await Promise.all(members.map((member) => member.signal("SIGKILL")));
    await Deno.remove(clusterDir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    endpoints: members.map((member) => member.endpoint),
    members,
    leader: () => findLeader(members),
    close: async () => {
      // SIGKILL: with a member down, a graceful stop waits seconds for a leadership transfer,
      // and the data is thrown away anyway.
      await Promise.all(members.map((member) => member.signal("SIGKILL")));
      await Deno.remove(clusterDir, { recursive: true });
    },
  };
}

/** What {@linkcode etcdMember} needs to run one member. */
interface MemberConfig {
  name: string;
  dataDir: string;
  peerUrl: string;
  /** `--initial-cluster`: `name=peerUrl` of every member, comma-separated. */
  initialCluster: string;
  tls?: EtcdTlsFiles;
  args?: string[];
}

/** One etcd member's process, started and stopped at will. */
interface Member extends EtcdProcess {
  /** Spawns the process without waiting for it to be healthy. */
  launch(): void;
  /** Waits until `/health` answers, or throws (and kills it) after the start timeout. */
  waitHealthy(): Promise<void>;
  /** Sends `name` (then SIGCONT, in case it is paused) and waits for the exit. */
  signal(name: Deno.Signal): Promise<void>;
}

/** An etcd member on a free client port, with its data and log in `config.dataDir`. */
function etcdMember(config: MemberConfig): Member {
  const { dataDir, tls } = config;
  const endpoint = `${tls ? "https" : "http"}://127.0.0.1:${freePort()}`;
  // Over TLS, /health is also served on a plain HTTP metrics port, so checking it needs no certs.
  const healthUrl = tls ? `http://127.0.0.1:${freePort()}` : endpoint;
  const args = [
    `--name=${config.name}`,
    `--data-dir=${dataDir}/data`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${config.peerUrl}`,
    `--initial-advertise-peer-urls=${config.peerUrl}`,
    `--initial-cluster=${config.initialCluster}`,
    // Ignored on a restart: a member with a data dir rejoins the cluster it knows.
    "--initial-cluster-state=new",
    // etcd writes its log there instead of to our stderr; it is kept for post-mortems.
    "--logger=zap",
    `--log-outputs=${dataDir}/etcd.log`,
    ...tls ? tlsArgs(tls, healthUrl) : [],
    ...config.args ?? [],
  ];
  let child: Deno.ChildProcess | undefined;
  let exited = false;

  const launch = () => {
    if (child !== undefined) throw new Error(`etcd at ${endpoint} is already running`);
    try {
      child = new Deno.Command("etcd", { args, stdin: "null", stdout: "null", stderr: "null" })
        .spawn();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new Error("etcd not found on PATH; install Debian's etcd-server", { cause: error });
      }
      throw error;
    }
    exited = false;
    child.status.then(() => exited = true);
  };

  const waitHealthy = async () => {
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

  return {
    endpoint,
    dataDir,
    launch,
    waitHealthy,
    signal,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    pause: () => child?.kill("SIGSTOP"),
    resume: () => child?.kill("SIGCONT"),
    start: async () => {
      launch();
      await waitHealthy();
    },
    close: async () => {
      await signal("SIGTERM");
      await Deno.remove(dataDir, { recursive: true });
    },
  };
}

/** The member whose ID the running members name as their leader, if they agree on one. */
async function findLeader(members: Member[]): Promise<Member | undefined> {
  const statuses = await Promise.all(members.map((member) => memberStatus(member.endpoint)));
  const leaders = new Set(statuses.flatMap((s) => s && s.leader !== "0" ? [s.leader] : []));
  if (leaders.size !== 1) return undefined;
  const [leader] = leaders;
  return members.find((_, i) => statuses[i]?.memberId === leader);
}

/** A member's own ID and its leader's (`"0"` for none), or `undefined` if it does not answer. */
async function memberStatus(
  endpoint: string,
): Promise<{ memberId: string; leader: string } | undefined> {
  try {
    const response = await fetch(`${endpoint}/v3/maintenance/status`, {
      method: "POST",
      body: "{}",
      signal: AbortSignal.timeout(1_000),
    });
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    const body = await response.json();
    return { memberId: String(body.header?.member_id), leader: String(body.leader ?? "0") };
  } catch {
    return undefined;
  }
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
  const { createEtcdClient } = await import("../etcd/etcd_client.ts");
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
