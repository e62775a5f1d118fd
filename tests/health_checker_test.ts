/**
 * The balancer's health checker (`lib/health/health_checker.ts`): its interval at scale
 * ({@linkcode checkIntervalMs}: small sets keep the configured interval, large ones stretch it
 * so the total check rate stays under the cap), and, in process, its checks of a real
 * {@linkcode ServerSet}'s members through real probes against real grpc-js health servers:
 * admission on the first passing check, ejection, readmission, a removed member no longer
 * checked, and `stop()`. Nothing here asserts a timing: states are waited for with a deadline.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Counter, Registry } from "prom-client";
import {
  checkIntervalMs,
  DEFAULT_HEALTH_INTERVAL_MS,
  DEFAULT_HEALTH_TIMEOUT_MS,
  DEFAULT_MAX_CHECKS_PER_S,
  HealthChecker,
} from "../lib/health/health_checker.ts";
import { HealthService, type ServingStatus } from "../lib/wire/grpc_health.ts";
import { ServerSet } from "../lib/picking/server_set.ts";
import { bindServer, createServer, shutdownServer } from "../lib/wire/grpc_server.ts";
import { waitFor } from "../lib/harness/wait.ts";
import { RAW_OPEN_RCA_SERVICE } from "./_orca.ts";

Deno.test("checkIntervalMs keeps the interval for small sets and caps the total rate for large ones", () => {
  assert.equal(checkIntervalMs(1, 250, 2_500), 250);
  assert.equal(checkIntervalMs(625, 250, 2_500), 250);
  assert.equal(checkIntervalMs(1_000, 250, 2_500), 400);
  assert.equal(checkIntervalMs(10_000, 250, 2_500), 4_000);
  assert.equal(checkIntervalMs(0, 100, 2_500), 100);
  for (const servers of [1, 10, 100, 1_000, 10_000]) {
    const perS = (servers * 1_000) / checkIntervalMs(servers, 250, 2_500);
    assert.ok(perS <= 2_500, `${servers} servers: ${perS} checks/s`);
  }
});

Deno.test("by default a hung server is ejected within 1 s up to 250 servers, and within 1.5 s among 1,000", () => {
  const worstMs = (servers: number) =>
    checkIntervalMs(servers, DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_MAX_CHECKS_PER_S) +
    DEFAULT_HEALTH_TIMEOUT_MS;
  assert.ok(worstMs(250) < 1_000);
  assert.ok(worstMs(1_000) <= 1_500);
});

/** A grpc-js server with the health service at `status`, counting the `Check` calls it gets. */
async function healthServer(
  options: {
    port?: number;
    status?: ServingStatus;
    health?: boolean;
    /** With grpc-js's own out-of-band ORCA service, reporting this CPU utilization. */
    orcaCpu?: number;
  } = {},
) {
  const server = createServer();
  const recorder = new grpc.ServerMetricRecorder();
  const counted = { checks: 0, orcaStreams: 0 };
  if (options.orcaCpu !== undefined) {
    recorder.setCpuUtilizationMetric(options.orcaCpu);
    recorder.addToServer(server);
  } else {
    // No ORCA: asked for it, answers UNIMPLEMENTED as a server without it does, and counts.
    server.addService(RAW_OPEN_RCA_SERVICE, {
      StreamCoreMetrics: (call: grpc.ServerWritableStream<unknown, unknown>) => {
        counted.orcaStreams++;
        call.emit("error", { code: grpc.status.UNIMPLEMENTED, details: "no ORCA here" });
      },
    });
  }
  const health = new HealthService([""], options.status ?? "SERVING");
  if (options.health ?? true) {
    // The service's own handlers, each Check counted on its way in.
    health.addTo({
      addService(service: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation) {
        const check = handlers.Check as grpc.handleUnaryCall<unknown, unknown>;
        server.addService(service, {
          ...handlers,
          Check: (
            call: grpc.ServerUnaryCall<unknown, unknown>,
            callback: grpc.sendUnaryData<unknown>,
          ) => {
            counted.checks++;
            check(call, callback);
          },
        });
      },
    } as unknown as grpc.Server);
  }
  const port = await bindServer(server, "127.0.0.1", options.port ?? 0);
  return {
    address: `127.0.0.1:${port}`,
    port,
    health,
    recorder,
    /** `Check` calls received so far. */
    checks: () => counted.checks,
    /** Out-of-band ORCA streams asked for so far (without `orcaCpu`). */
    orcaStreams: () => counted.orcaStreams,
    async stop() {
      health.close();
      await shutdownServer(server, 1_000);
    },
    kill() {
      health.close();
      server.forceShutdown();
    },
  };
}

type TestServer = Awaited<ReturnType<typeof healthServer>>;

/**
 * A TCP proxy to `port` on 127.0.0.1 that counts the connections open through it: what a
 * probe's connection to a server looks like from the server's side.
 */
function countingProxy(port: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const pumps: Promise<void>[] = [];
  let open = 0;
  const closeQuietly = (conn: Deno.Conn) => {
    if (!conns.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // closed already
    }
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (let n = await from.read(buffer); n !== null; n = await from.read(buffer)) {
        for (let at = 0; at < n;) at += await to.write(buffer.subarray(at, n));
      }
    } catch {
      // one side closed
    }
    closeQuietly(from);
    closeQuietly(to);
  };
  const accepting = (async () => {
    for await (const client of listener) {
      conns.add(client);
      open++;
      const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.add(upstream);
      pumps.push(pump(client, upstream).then(() => void open--), pump(upstream, client));
    }
  })();
  return {
    address: `127.0.0.1:${listener.addr.port}`,
    /** Connections from the client side still open. */
    open: () => open,
    async close() {
      listener.close();
      for (const conn of [...conns]) closeQuietly(conn);
      await accepting.catch(() => {});
      await Promise.all(pumps);
    },
  };
}

/**
 * Follows the interval timers that `lib/health/` starts (the checker's ticker, the sweeper's
 * sweep) by wrapping the global `setInterval` and `clearInterval` until `restore()`.
 */
function healthIntervals() {
  const { setInterval: realSet, clearInterval: realClear } = globalThis;
  type Id = ReturnType<typeof realSet>;
  const running = new Set<Id>();
  globalThis.setInterval = ((...args: Parameters<typeof realSet>) => {
    const id = realSet(...args);
    if (/lib\/health\//.test(new Error().stack ?? "")) running.add(id);
    return id;
  }) as typeof realSet;
  globalThis.clearInterval = ((id?: Id) => {
    if (id !== undefined) running.delete(id);
    realClear(id);
  }) as typeof realClear;
  return {
    /** Intervals started from `lib/health/` and not cleared. */
    running: () => running.size,
    restore() {
      globalThis.setInterval = realSet;
      globalThis.clearInterval = realClear;
    },
  };
}

/** A counter's value. */
async function count(counter: Counter): Promise<number> {
  return (await counter.get()).values[0]?.value ?? 0;
}

/** A checker of a new set, checking every 50 ms, with its ejections and readmissions counted. */
function checkerOf(set = new ServerSet()) {
  const registers = [new Registry()];
  const metrics = {
    healthEjections: new Counter({ name: "ejections", help: "ejections", registers }),
    healthReadmissions: new Counter({ name: "readmissions", help: "readmissions", registers }),
    orcaReports: new Counter({
      name: "orca",
      help: "orca",
      labelNames: ["source"] as const,
      registers,
    }),
  };
  const checker = new HealthChecker({ set, intervalMs: 50, timeoutMs: 1_000, metrics });
  return { set, checker, metrics };
}

/** Waits until `server` has received `more` checks beyond those it has now. */
async function checkedMore(server: TestServer, more: number): Promise<void> {
  const target = server.checks() + more;
  await waitFor(`${more} more checks of ${server.address}`, () => server.checks() >= target);
}

Deno.test("HealthChecker holds a new member out of the picks until its first check passes", async () => {
  const serving = await healthServer();
  const bare = await healthServer({ health: false }); // an original backend: UNIMPLEMENTED
  const failing = await healthServer({ status: "NOT_SERVING" });
  const { set, checker, metrics } = checkerOf();
  set.add(serving.address); // a member before start
  checker.start();
  try {
    assert.equal(set.isHealthy(serving.address), false, "held out until its first check");
    set.add(bare.address);
    set.add(failing.address);
    assert.equal(set.isHealthy(bare.address), false);
    assert.equal(set.isHealthy(failing.address), false);
    await Promise.all(
      [serving, bare, failing].map((server) => checker.whenChecked(server.address)),
    );
    assert.equal(set.isHealthy(serving.address), true);
    assert.equal(set.isHealthy(bare.address), true, "no health service: alive, so healthy");
    assert.equal(set.isHealthy(failing.address), false, "a first check that fails keeps it out");
    assert.ok(serving.checks() >= 1);
    // Admission is not a readmission; a member that never passed was ejected once.
    assert.equal(await count(metrics.healthReadmissions), 0);
    assert.equal(await count(metrics.healthEjections), 1);
    // Checked again every interval, and it stays in.
    await checkedMore(serving, 3);
    assert.equal(set.isHealthy(serving.address), true);
  } finally {
    checker.stop();
    await Promise.all([serving.stop(), bare.stop(), failing.stop()]);
  }
});

Deno.test("HealthChecker takes the load of a server that tells it only out of band (grpc-js's OpenRcaService), and asks one without it once per connection", async () => {
  const orca = await healthServer({ orcaCpu: 0.42 });
  const plain = await healthServer();
  const { set, checker, metrics } = checkerOf();
  checker.start();
  const loadOf = (address: string) =>
    set.snapshot.servers.find((s) => s.address === address)?.load?.cpuLoad;
  try {
    set.add(orca.address);
    set.add(plain.address);
    await waitFor("the ORCA server's load", () => loadOf(orca.address) === 42);
    orca.recorder.setCpuUtilizationMetric(0.9);
    await waitFor("its next report", () => loadOf(orca.address) === 90);
    const counts = await metrics.orcaReports.get();
    assert.ok(
      counts.values.some((v) => v.labels.source === "out_of_band" && v.value >= 2),
      JSON.stringify(counts.values),
    );
    // The server without ORCA was asked once; its checks go on, and it is not asked again.
    await checkedMore(plain, 5);
    assert.equal(plain.orcaStreams(), 1);
    assert.equal(loadOf(plain.address), undefined);
    assert.equal(set.isHealthy(plain.address), true);
  } finally {
    checker.stop();
    await Promise.all([orca.stop(), plain.stop()]);
  }
});

Deno.test("HealthChecker ejects a member whose check fails, and readmits it when it passes again", async () => {
  const server = await healthServer();
  const { set, checker, metrics } = checkerOf();
  checker.start();
  try {
    set.add(server.address);
    await checker.whenChecked(server.address);
    assert.equal(set.isHealthy(server.address), true);
    server.health.set("", "NOT_SERVING");
    await waitFor("the ejection", () => !set.isHealthy(server.address));
    assert.equal(await count(metrics.healthEjections), 1);
    assert.equal(set.has(server.address), true, "ejected from the picks, still a member");
    assert.deepEqual(set.ejected().map((s) => s.address), [server.address]);
    // Failing checks go on, and eject it once.
    await checkedMore(server, 3);
    assert.equal(set.isHealthy(server.address), false);
    assert.equal(await count(metrics.healthEjections), 1);
    server.health.set("", "SERVING");
    await waitFor("the readmission", () => set.isHealthy(server.address));
    assert.equal(await count(metrics.healthReadmissions), 1);
    assert.deepEqual(set.ejected(), []);
  } finally {
    checker.stop();
    await server.stop();
  }
});

Deno.test("HealthChecker ejects a member whose server dies, and readmits it once it is back on its port", async () => {
  const first = await healthServer();
  const { set, checker, metrics } = checkerOf();
  checker.start();
  let second: TestServer | undefined;
  try {
    set.add(first.address);
    await checker.whenChecked(first.address);
    assert.equal(set.isHealthy(first.address), true);
    first.kill();
    await waitFor("the dead server's ejection", () => !set.isHealthy(first.address));
    assert.equal(await count(metrics.healthEjections), 1);
    second = await healthServer({ port: first.port });
    // The probe reconnects after its connection backoff: well within the deadline.
    await waitFor("the readmission", () => set.isHealthy(first.address), 15_000);
    assert.equal(await count(metrics.healthReadmissions), 1);
    assert.ok(second.checks() >= 1);
  } finally {
    checker.stop();
    await second?.stop();
  }
});

Deno.test("HealthChecker stops checking a member removed from the set, and closes its connection", async () => {
  const kept = await healthServer();
  const removed = await healthServer();
  const proxy = countingProxy(removed.port);
  const { set, checker } = checkerOf();
  checker.start();
  try {
    set.add(kept.address);
    set.add(proxy.address);
    await checker.whenChecked(proxy.address);
    await checkedMore(removed, 2);
    assert.equal(proxy.open(), 1, "one kept connection per server");
    set.remove(proxy.address);
    await waitFor("the removed member's connection to close", () => proxy.open() === 0);
    // A check sent just before the removal may still arrive: counted once the kept member has
    // had one more check, then no more while it has several.
    await checkedMore(kept, 1);
    const seen = removed.checks();
    await checkedMore(kept, 5);
    assert.equal(removed.checks(), seen);
    assert.equal(proxy.open(), 0);
    assert.equal(set.has(proxy.address), false);
    await checker.whenChecked(proxy.address); // not a member: at once
    // Added again, it is a new member: held out until its first check.
    set.add(proxy.address);
    assert.equal(set.isHealthy(proxy.address), false);
    await checker.whenChecked(proxy.address);
    assert.equal(set.isHealthy(proxy.address), true);
    assert.ok(removed.checks() > seen);
  } finally {
    checker.stop();
    await proxy.close();
    await Promise.all([kept.stop(), removed.stop()]);
  }
});

Deno.test("HealthChecker.stop() closes every probe, clears its timers and stops following the set", async () => {
  const intervals = healthIntervals();
  const server = await healthServer();
  const proxy = countingProxy(server.port);
  const late = await healthServer();
  const control = await healthServer(); // checked by another checker: time passing, in checks
  const { set, checker } = checkerOf();
  const other = checkerOf();
  try {
    checker.start();
    set.add(proxy.address);
    await checker.whenChecked(proxy.address);
    await checkedMore(server, 2);
    assert.equal(proxy.open(), 1);
    // The ticker, and the sweeper while a check is in flight.
    assert.ok(intervals.running() >= 1);
    checker.stop();
    assert.equal(intervals.running(), 0, "no ticker or sweep left running");
    other.checker.start();
    other.set.add(control.address);
    await other.checker.whenChecked(control.address);
    await waitFor("the probe's connection to close", () => proxy.open() === 0);
    await checkedMore(control, 1); // a check in flight at stop() has arrived by then
    const seen = server.checks();
    // A member added after stop() is not held out, and not checked.
    set.add(late.address);
    assert.equal(set.isHealthy(late.address), true);
    await checker.whenChecked(late.address);
    await checkedMore(control, 5);
    assert.equal(server.checks(), seen);
    assert.equal(late.checks(), 0);
    assert.equal(proxy.open(), 0);
    assert.equal(set.isHealthy(proxy.address), true, "stop() leaves the set as it was");
    checker.stop(); // again: nothing
  } finally {
    checker.stop();
    other.checker.stop();
    intervals.restore();
    await proxy.close();
    await Promise.all([server.stop(), late.stop(), control.stop()]);
  }
});
