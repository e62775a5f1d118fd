/**
 * A small data centre on one machine, for tests of what crosses a network: each host is a Linux
 * network namespace with one interface (`eth0`, an address of {@linkcode SUBNET}) cabled to a
 * bridge in a switch namespace of its own, and a hosts file naming every host. Processes run in
 * a host with `ip netns exec`, which also puts the host's `/etc/netns/<ns>/hosts` in place of
 * `/etc/hosts`, so they reach each other by name, as in a deployment.
 *
 * Traffic stays between the namespaces made here: the machine's own namespace gets no interface
 * and no route into them. Faults are made the way a network makes them:
 * - {@linkcode DataCentre.unplug} takes a host's switch port down (a pulled cable): its packets
 *   vanish, nothing is refused;
 * - {@linkcode DataCentre.partition} routes two hosts' traffic to each other through a gateway
 *   that does not exist (a dead router): packets between just those two vanish silently, in both
 *   directions, and the rest of the network is untouched.
 *
 * Needs root and iproute2; a machine where namespaces cannot be made fails the test, saying why.
 *
 * @module
 */
import { type EntryName, type EntryProcess, spawnEntry } from "../lib/harness/entry_process.ts";

/** The data centre's addresses: `10.77.0.0/24`. */
export const SUBNET = "10.77.0";
/** An address of the subnet that no host has: routes through it lead nowhere. */
const DEAD_GATEWAY = `${SUBNET}.254`;

/** A host of the data centre. */
export interface Host {
  readonly name: string;
  /** Its network namespace. */
  readonly ns: string;
  readonly ip: string;
  /** Its port on the switch (the bridge side of its cable). */
  readonly port: string;
}

/** Runs `ip <args>`; throws with ip's own message when it fails. */
async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** Names of the namespaces present, from `ip netns list`. */
async function namespaces(): Promise<string[]> {
  const out = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.split(" ")[0])
    .filter((n) => n !== "");
}

/** Whether a process of this pid is alive. */
function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** A data centre of named hosts; see the module doc. */
export class DataCentre {
  readonly #prefix: string;
  readonly #switch: string;
  readonly #hosts = new Map<string, Host>();
  readonly #processes: { stop(): Promise<unknown> }[] = [];
  readonly #dirs: string[] = [];
  readonly #entries: EntryProcess[] = [];

  private constructor(prefix: string) {
    this.#prefix = prefix;
    this.#switch = `${prefix}-switch`;
  }

  /**
   * Builds hosts named `names` (addresses `.11` up, in order) on one switch. Namespaces a run
   * that died left behind are removed first.
   */
  static async build(names: readonly string[]): Promise<DataCentre> {
    const uid = new TextDecoder().decode(
      (await new Deno.Command("id", { args: ["-u"], stdout: "piped" }).output()).stdout,
    ).trim();
    if (uid !== "0") {
      throw new Error(
        "Cannot build the test data centre as it needs root (network namespaces, veth pairs, " +
          "a bridge): run the tests as root, as CI does",
      );
    }
    await removeLeftovers();
    const dc = new DataCentre(`lbdc${Deno.pid}`);
    try {
      await ip("netns", "add", dc.#switch);
      await ip("-n", dc.#switch, "link", "add", "br0", "type", "bridge");
      await ip("-n", dc.#switch, "link", "set", "br0", "up");
      for (const [i, name] of names.entries()) {
        const host: Host = {
          name,
          ns: `${dc.#prefix}-${name}`,
          ip: `${SUBNET}.${11 + i}`,
          port: `p${i}`,
        };
        await ip("netns", "add", host.ns);
        await ip("-n", host.ns, "link", "set", "lo", "up");
        await ip(
          "link",
          "add",
          "eth0",
          "netns",
          host.ns,
          "type",
          "veth",
          "peer",
          "name",
          host.port,
          "netns",
          dc.#switch,
        );
        await ip("-n", dc.#switch, "link", "set", host.port, "master", "br0");
        await ip("-n", dc.#switch, "link", "set", host.port, "up");
        await ip("-n", host.ns, "addr", "add", `${host.ip}/24`, "dev", "eth0");
        await ip("-n", host.ns, "link", "set", "eth0", "up");
        dc.#hosts.set(name, host);
      }
      const hostsFile = [
        "127.0.0.1 localhost",
        "::1 localhost ip6-localhost",
        ...[...dc.#hosts.values()].map((h) => `${h.ip} ${h.name}`),
        "",
      ].join("\n");
      for (const host of dc.#hosts.values()) {
        const dir = `/etc/netns/${host.ns}`;
        await Deno.mkdir(dir, { recursive: true });
        dc.#dirs.push(dir);
        await Deno.writeTextFile(`${dir}/hosts`, hostsFile);
      }
    } catch (error) {
      await dc.close();
      throw new Error(
        `Cannot build the test data centre (network namespaces): ${(error as Error).message}`,
        { cause: error },
      );
    }
    return dc;
  }

  /** The host named `name`. */
  host(name: string): Host {
    const host = this.#hosts.get(name);
    if (!host) throw new TypeError(`No host '${name}' in the data centre`);
    return host;
  }

  /** Starts an entry on `host` with its shipped permissions; stopped by {@linkcode close}. */
  spawn(
    host: string,
    entry: EntryName,
    args: string[],
    options: {
      captureStdout?: boolean;
      name?: string;
      keepLines?: number;
      env?: Record<string, string>;
    } = {},
  ): EntryProcess {
    const process = spawnEntry(entry, args, {
      ...options,
      name: options.name ?? `${entry}@${host}`,
      netns: this.host(host).ns,
    });
    this.#processes.push(process);
    this.#entries.push(process);
    return process;
  }

  /** Starts `command` on `host` with stdout and stderr in `logFile`; stopped by {@linkcode close}. */
  run(host: string, command: string[], logFile: string): { stop(): Promise<unknown> } {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        this.host(host).ns,
        "sh",
        "-c",
        'exec "$@" >"$0" 2>&1',
        logFile,
        ...command,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // It has exited.
      }
      await child.status;
    };
    this.#processes.push({ stop });
    return { stop };
  }

  /** A temporary folder removed by {@linkcode close}. */
  async tempDir(): Promise<string> {
    const dir = await Deno.makeTempDir({ prefix: `${this.#prefix}-` });
    this.#dirs.push(dir);
    return dir;
  }

  /** Pulls `host`'s cable: its switch port goes down. */
  unplug(host: string): Promise<void> {
    return ip("-n", this.#switch, "link", "set", this.host(host).port, "down");
  }

  /** Plugs `host`'s cable back in. */
  plug(host: string): Promise<void> {
    return ip("-n", this.#switch, "link", "set", this.host(host).port, "up");
  }

  /** Cuts `a` and `b` off from each other only (both directions; see the module doc). */
  async partition(a: string, b: string): Promise<void> {
    await ip("-n", this.host(a).ns, "route", "add", `${this.host(b).ip}/32`, "via", DEAD_GATEWAY);
    await ip("-n", this.host(b).ns, "route", "add", `${this.host(a).ip}/32`, "via", DEAD_GATEWAY);
  }

  /** Undoes {@linkcode partition}. */
  async heal(a: string, b: string): Promise<void> {
    await ip("-n", this.host(a).ns, "route", "del", `${this.host(b).ip}/32`);
    await ip("-n", this.host(b).ns, "route", "del", `${this.host(a).ip}/32`);
  }

  /** Prints the last `lines` lines of the log of each entry whose name matches `pattern`. */
  printLogs(pattern: RegExp, lines: number): void {
    for (const p of this.#entries.filter((e) => pattern.test(e.name))) {
      console.error(`--- ${p.name}: its last ${lines} log lines ---`);
      console.error(p.log().trimEnd().split("\n").slice(-lines).join("\n"));
    }
  }

  /**
   * Stops every process started here, then removes the hosts, the switch and the folders. With
   * `LB_DATACENTRE_LOGS=<dir>` set, the entries' logs are kept there first, to see what happened.
   */
  async close(): Promise<void> {
    const keep = Deno.env.get("LB_DATACENTRE_LOGS");
    if (keep) {
      await Deno.mkdir(keep, { recursive: true });
      for (const [i, p] of this.#entries.entries()) {
        await Deno.writeTextFile(`${keep}/${i}-${p.name.replace(/[^\w.-]+/g, "_")}.log`, p.log());
      }
    }
    await Promise.allSettled(this.#processes.map((p) => p.stop()));
    for (const ns of [...[...this.#hosts.values()].map((h) => h.ns), this.#switch]) {
      await ip("netns", "del", ns).catch(() => {});
    }
    for (const dir of this.#dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Removes the namespaces and hosts files of data centres whose test process is gone. */
async function removeLeftovers(): Promise<void> {
  for (const ns of await namespaces()) {
    const pid = /^lbdc(\d+)-/.exec(ns)?.[1];
    if (pid === undefined || alive(Number(pid))) continue;
    await ip("netns", "del", ns).catch(() => {});
    await Deno.remove(`/etc/netns/${ns}`, { recursive: true }).catch(() => {});
  }
}

/** A JSON log line of an entry started with `--log-format json`. */
export interface LogLine {
  "@timestamp": string;
  message: string;
  [field: string]: unknown;
}

/** The JSON lines of `process`'s log (stderr) whose message matches `pattern`. */
export function logLines(process: EntryProcess, pattern: RegExp): LogLine[] {
  return process.log().split("\n").flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as LogLine;
      return pattern.test(parsed.message) ? [parsed] : [];
    } catch {
      return [];
    }
  });
}
