/**
 * The system across hosts: etcd as a 3-member cluster on three hosts, two balancers, three
 * backends and a client host, each a network namespace reached by name (`tests/_datacentre.ts`),
 * each process started with its shipped task's permissions and command line. Faults are made by
 * the network: a backend's cable pulled under load, a client cut from its balancer, one etcd
 * member's cable pulled, a balancer cut from etcd.
 *
 * What each fault cost is printed (`datacentre:` lines) and gathered in docs/operations.md's "Deploying
 * across hosts"; the assertions are about behaviour (nothing failed, everyone converged), never
 * about how long it took.
 */
import assert from "node:assert/strict";
import type { EntryProcess } from "../lib/harness/entry_process.ts";
import type { LoadRunSummary } from "../lib/client/load_run.ts";
import { preferredBalancer } from "../lib/client/task_client.ts";
import { waitFor } from "../lib/harness/wait.ts";
import { DataCentre, logLines } from "./_datacentre.ts";

const ETCD_HOSTS = ["etcd-1", "etcd-2", "etcd-3"];
const BALANCER_HOSTS = ["lb-1", "lb-2"];
const BACKEND_HOSTS = ["backend-1", "backend-2", "backend-3"];
const CLIENT = "client-1";
const ETCD = ETCD_HOSTS.map((h) => `http://${h}:2379`).join(",");
const BALANCERS = BALANCER_HOSTS.map((h) => `${h}:50051`).join(",");
const BACKEND_PORT = 50052;
/** Heap limit of the clients (MiB): a load client uses about a tenth of it. */
const CLIENT_HEAP_MB = 1_024;
/**
 * The backends' lease TTL (s), as docs/operations.md advises across hosts: longer than etcd3 takes to
 * notice a member gone silent (its keepalive pings, 10 s + 5 s), so a lease kept alive through
 * a member whose cable is pulled outlives the cut.
 */
const LEASE_TTL_S = 20;

/** What `client --json` printed last: the run's summary. */
type Summary = LoadRunSummary & { balancerFailovers?: number; balancerReturns?: number };

/** Prints a measured figure for docs/datacentre-run.txt (the test never asserts one). */
function figure(what: string, value: unknown): void {
  console.log(`datacentre: ${what}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
}

/** Milliseconds from `since` (epoch ms) to the first log line of `process` after it matching `pattern`. */
function msToLog(process: EntryProcess, pattern: RegExp, since: number): number | undefined {
  const line = logLines(process, pattern).find((l) => Date.parse(l["@timestamp"]) >= since);
  return line === undefined ? undefined : Date.parse(line["@timestamp"]) - since;
}

Deno.test({
  name:
    "data centre: tasks cross hosts by name, and survive a pulled cable, a cut client, a cut etcd member and a balancer cut from etcd",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const dc = await DataCentre.build([...ETCD_HOSTS, ...BALANCER_HOSTS, ...BACKEND_HOSTS, CLIENT]);
  let failed = false;
  /** A step whose failure also prints the balancers' logs, the one record of what they saw. */
  const step = async (name: string, fn: () => Promise<void>) => {
    if (await t.step(name, fn)) return;
    failed = true;
  };
  try {
    const dir = await dc.tempDir();
    const cluster = ETCD_HOSTS.map((h) => `${h}=http://${h}:2380`).join(",");
    for (const h of ETCD_HOSTS) {
      const ip = dc.host(h).ip;
      dc.run(h, [
        "etcd",
        `--name=${h}`,
        `--data-dir=${dir}/${h}`,
        `--listen-client-urls=http://${ip}:2379`,
        `--advertise-client-urls=http://${h}:2379`,
        `--listen-peer-urls=http://${ip}:2380`,
        `--initial-advertise-peer-urls=http://${h}:2380`,
        `--initial-cluster=${cluster}`,
        "--initial-cluster-token=lbdc",
        "--initial-cluster-state=new",
      ], `${dir}/${h}.log`);
    }
    await waitFor(
      "the etcd cluster to serve",
      async () => {
        for (const h of ETCD_HOSTS) {
          const log = await Deno.readTextFile(`${dir}/${h}.log`).catch(() => "");
          if (!log.includes("ready to serve client requests")) return false;
        }
        return true;
      },
      30_000,
      200,
    );

    const balancers = BALANCER_HOSTS.map((h) =>
      dc.spawn(h, "balancer", [
        ...["--host", "0.0.0.0", "--advertise", h, "--port", "50051", "--etcd", ETCD],
        ...["--log-format", "json"],
      ], { keepLines: 20_000 })
    );
    // Two ways to be named: listen everywhere and advertise a name, or listen on the name.
    const backend = (h: string, port = BACKEND_PORT) =>
      dc.spawn(h, "backend", [
        ...(h === "backend-2" ? ["--host", h] : ["--host", "0.0.0.0", "--advertise", h]),
        ...["--port", String(port), "--etcd", ETCD, "--lease-ttl", String(LEASE_TTL_S)],
        ...["--log-format", "json"],
      ], { name: `backend ${h}:${port}` });
    const backends = new Map(BACKEND_HOSTS.map((h) => [h, backend(h)]));
    const names = BACKEND_HOSTS.map((h) => `${h}:${BACKEND_PORT}`);

    /** Each balancer's healthy servers, asked by the shipped client on the client host. */
    const healthy = async (balancer: string): Promise<string[]> => {
      const list = dc.spawn(CLIENT, "client", ["--balancer", balancer, "--list", "--json"], {
        captureStdout: true,
      });
      const status = await list.status;
      if (!status.success) throw new Error(`client --list: ${list.log()}`);
      const servers = JSON.parse(list.stdout()).servers as {
        server_address: string;
        healthy: boolean;
      }[];
      return servers.filter((s) => s.healthy).map((s) => s.server_address).sort();
    };
    /** Whether `balancer` lists exactly `expected` as healthy; otherwise throws with what it lists. */
    const listsEqual = async (balancer: string, expected: string[]) => {
      const listed = JSON.stringify(await healthy(balancer));
      if (listed === JSON.stringify([...expected].sort())) return true;
      throw new Error(`${balancer} lists ${listed} as healthy`);
    };
    for (const b of BALANCER_HOSTS) {
      await waitFor(
        `${b} to list every backend, healthy`,
        () => listsEqual(`${b}:50051`, names),
        60_000,
        500,
      );
    }

    /** Starts the shipped client on the client host; resolves with its summary. */
    const load = (args: string[]) => {
      const client = dc.spawn(CLIENT, "client", [...args, "--json", "--progress-ms", "250"], {
        captureStdout: true,
        // A client that runs away fails in seconds, not after minutes at V8's default heap.
        env: { DENO_V8_FLAGS: `--max-old-space-size=${CLIENT_HEAP_MB}` },
      });
      const started = waitFor(
        "the client to start its load",
        () => client.stdout().includes('"progress"'),
        30_000,
        50,
      );
      const result = client.status.then((status) => {
        const last = client.stdout().trim().split("\n").at(-1) ?? "";
        if (!status.success && !last.includes('"succeeded"')) {
          // Its last progress lines tell whether its event loop was still turning.
          const progress = client.stdout().trim().split("\n").slice(-4).join("\n");
          throw new Error(
            `client ${args.join(" ")} exited ${status.code}: ${client.log()}\n` +
              `its last progress lines:\n${progress}`,
          );
        }
        return JSON.parse(last) as Summary;
      });
      return { started, result };
    };

    await step("every backend is picked and reached, in lookaside and watch mode", async () => {
      for (const mode of ["lookaside", "watch"]) {
        const { result } = load([
          ...["--balancer", BALANCERS, "--mode", mode, "--requests", "90", "--concurrency", "3"],
          ...["--client-ids", "30"],
        ]);
        const summary = await result;
        figure(`${mode}: tasks ok / failed, per server`, [
          summary.succeeded,
          summary.failed,
          summary.perServer,
        ]);
        assert.equal(summary.failed, 0, JSON.stringify(summary.failureCauses));
        assert.deepEqual(Object.keys(summary.perServer).sort(), names);
      }
      // Clients that find the balancers in etcd, by name too.
      const { result } = load(["--balancers-etcd", ETCD, "--requests", "30"]);
      assert.equal((await result).failed, 0);
    });

    await step(
      "a backend's cable pulled under load: out of the picks, nothing fails, back in when plugged",
      async () => {
        const runs = ["lookaside", "watch"].map((mode) =>
          load([
            ...["--balancer", BALANCERS, "--mode", mode, "--duration", "14", "--concurrency", "4"],
            ...["--client-ids", "40"],
          ])
        );
        await Promise.all(runs.map((r) => r.started));
        await new Promise((r) => setTimeout(r, 2_000));
        const cutAt = Date.now();
        await dc.unplug("backend-3");
        const ejected = /^Server backend-3:50052 ejected/;
        for (const b of balancers) {
          await waitFor(
            `${b.name} to eject backend-3`,
            () => msToLog(b, ejected, cutAt) !== undefined,
            15_000,
            50,
          );
        }
        await new Promise((r) => setTimeout(r, 4_000));
        const plugAt = Date.now();
        await dc.plug("backend-3");
        // Back in the picks: readmitted, or admitted anew when its lease ran out during the cut and it
        // registered again.
        const readmitted = /^Server backend-3:50052 (readmitted|admitted)/;
        for (const b of balancers) {
          await waitFor(
            `${b.name} to readmit backend-3`,
            () => msToLog(b, readmitted, plugAt) !== undefined,
            30_000,
            50,
          );
        }
        const summaries = await Promise.all(runs.map((r) => r.result));
        figure(
          "cable pulled: ms to ejection per balancer",
          balancers.map((b) => msToLog(b, ejected, cutAt)),
        );
        figure(
          "cable plugged: ms to readmission per balancer",
          balancers.map((b) => msToLog(b, readmitted, plugAt)),
        );
        for (const [i, s] of summaries.entries()) {
          figure(
            `cable pulled, ${i ? "watch" : "lookaside"}: tasks ok / failed / retried, p99 / max ms`,
            [
              s.succeeded,
              s.failed,
              s.retried,
              s.latencyMs.p99,
              s.latencyMs.max,
            ],
          );
          assert.equal(s.failed, 0, JSON.stringify(s.failureCauses));
        }
      },
    );

    await step(
      "a client cut from its balancer but not the other fails over without a failed task",
      async () => {
        // A client id that prefers lb-1, so the cut is between the client and its own balancer.
        const id = Array.from({ length: 100 }, (_, i) => `dc-client-${i}`)
          .find((id) => preferredBalancer(id, BALANCERS.split(",")) === "lb-1:50051")!;
        const runs = ["lookaside", "watch"].map((mode) =>
          load([
            ...["--balancer", BALANCERS, "--mode", mode, "--duration", "14", "--concurrency", "4"],
            ...["--client-id", `${id}`],
          ])
        );
        await Promise.all(runs.map((r) => r.started));
        await new Promise((r) => setTimeout(r, 2_000));
        await dc.partition(CLIENT, "lb-1");
        await new Promise((r) => setTimeout(r, 6_000));
        await dc.heal(CLIENT, "lb-1");
        for (const [i, s] of (await Promise.all(runs.map((r) => r.result))).entries()) {
          figure(
            `client cut from lb-1, ${
              i ? "watch" : "lookaside"
            }: tasks ok / failed, failovers, returns, p99 / max ms`,
            [
              s.succeeded,
              s.failed,
              s.balancerFailovers,
              s.balancerReturns,
              s.latencyMs.p99,
              s.latencyMs.max,
            ],
          );
          assert.equal(s.failed, 0, JSON.stringify(s.failureCauses));
          assert.ok((s.balancerFailovers ?? 0) >= 1, "it moved to lb-2");
        }
      },
    );

    await step(
      "each etcd member's cable pulled in turn: no interruption, a join still reaches both balancers",
      async () => {
        // Each member in turn, so that whichever member a backend's lease keepalive or a
        // balancer's watch is on goes silent once.
        const run = load([
          ...["--balancer", BALANCERS, "--duration", String(3 * 9), "--concurrency", "4"],
          ...["--client-ids", "40"],
        ]);
        await run.started;
        const stepAt = Date.now();
        for (const [i, member] of ETCD_HOSTS.entries()) {
          const cutAt = Date.now();
          await dc.unplug(member);
          if (i === 0) {
            await backends.get("backend-2")!.stop();
            for (const b of BALANCER_HOSTS) {
              await waitFor(
                `${b} to see backend-2 leave`,
                () => listsEqual(`${b}:50051`, [names[0], names[2]]),
                30_000,
                500,
              );
            }
            backends.set("backend-2", backend("backend-2"));
          }
          for (const b of BALANCER_HOSTS) {
            await waitFor(
              `${b} to list every backend`,
              () => listsEqual(`${b}:50051`, names),
              30_000,
              500,
            );
          }
          await new Promise((r) => setTimeout(r, Math.max(0, cutAt + 7_000 - Date.now())));
          await dc.plug(member);
        }
        const s = await run.result;
        figure("each etcd member unplugged for 7 s in turn: tasks ok / failed, p99 / max ms", [
          s.succeeded,
          s.failed,
          s.latencyMs.p99,
          s.latencyMs.max,
        ]);
        assert.equal(s.failed, 0, JSON.stringify(s.failureCauses));
        // No backend lost its lease: each is still registered under the lease it started with.
        for (const b of backends.values()) {
          const lost = logLines(b, /^Lost the lease/)
            .filter((l) => Date.parse(l["@timestamp"]) >= stepAt);
          assert.deepEqual(lost, [], `${b.name} kept its lease`);
        }
      },
    );

    await step(
      "a balancer cut from etcd keeps serving its last set, and converges when the link is back",
      async () => {
        for (const e of ETCD_HOSTS) await dc.partition("lb-1", e);
        // While lb-1 cannot see etcd: backend-1 leaves (its key deleted), a second backend joins.
        await backends.get("backend-1")!.stop();
        const joined = `backend-3:${BACKEND_PORT + 1}`;
        backend("backend-3", BACKEND_PORT + 1);
        const truth = [names[1], names[2], joined].sort();
        const changedAt = Date.now();
        await waitFor(
          "lb-2 to see the leave and the join",
          () => listsEqual("lb-2:50051", truth),
          60_000,
          500,
        );
        figure(
          "lb-2 (not cut): ms to list the leave and the join (polled)",
          Date.now() - changedAt,
        );
        // lb-1 still answers from what it knew: the join is not there yet.
        const during = await healthy("lb-1:50051");
        assert.ok(!during.includes(joined), `lb-1 cannot know of ${joined} yet: ${during}`);
        const pinned = load(["--balancer", "lb-1:50051", "--requests", "40", "--concurrency", "2"]);
        const s = await pinned.result;
        figure("lb-1 cut from etcd: tasks through it ok / failed", [s.succeeded, s.failed]);
        assert.equal(s.failed, 0, JSON.stringify(s.failureCauses));
        const healAt = Date.now();
        for (const e of ETCD_HOSTS) await dc.heal("lb-1", e);
        await waitFor(
          "lb-1 to converge on etcd's set",
          () => listsEqual("lb-1:50051", truth),
          60_000,
          500,
        );
        figure("lb-1 healed: ms to the same set as etcd's (polled)", Date.now() - healAt);
        // Its own lease ran out while it could not renew it: it registers again.
        await waitFor(
          "lb-1 to be registered in etcd again",
          async () => {
            const list = dc.spawn(
              CLIENT,
              "client",
              ["--balancers-etcd", ETCD, "--list", "--json"],
              {
                captureStdout: true,
              },
            );
            await list.status;
            const found = list.stdout().trim().split("\n").map((l) => JSON.parse(l).balancer);
            return found.includes("lb-1:50051") && found.includes("lb-2:50051");
          },
          60_000,
          500,
        );
        figure("lb-1 cut: its set during the cut", during);
      },
    );
  } finally {
    if (failed) dc.printLogs(/^(balancer|backend)@/, 60);
    await dc.close();
  }
});
