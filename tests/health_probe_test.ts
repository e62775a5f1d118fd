/**
 * The balancer's health probe (`lib/health/health_probe.ts`: gRPC health Check over HTTP/2 spoken on a
 * plain socket) against real grpc-js servers: every answer a server can give, no
 * server, a server that never answers, a lost connection, a restarted server, and TLS.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import { HealthService } from "../lib/wire/grpc_health.ts";
import { decodeOrcaReport } from "../lib/wire/orca.ts";
import {
  type CheckResult,
  HealthProbe,
  MAX_CHECKS_PER_CONNECTION,
} from "../lib/health/health_probe.ts";
import { encodeField } from "../lib/health/hpack.ts";
import { freePort } from "../lib/harness/ports.ts";
import { bindServer, createServer, shutdownServer } from "../lib/wire/grpc_server.ts";
import type { TlsConfig } from "../lib/wire/tls.ts";
import { waitFor } from "../lib/harness/wait.ts";
import { RAW_OPEN_RCA_SERVICE } from "./_orca.ts";

const read = (name: string) =>
  Deno.readTextFileSync(new URL(`fixtures/tls/${name}`, import.meta.url));

/** A grpc-js server with the health service (`""` and `svc`) at `status`, on `port`. */
async function healthServer(
  options: { port?: number; tls?: TlsConfig; status?: "SERVING" | "NOT_SERVING" } = {},
): Promise<{ address: string; server: grpc.Server; health: HealthService }> {
  const server = createServer();
  const health = new HealthService(["", "svc"], options.status ?? "SERVING");
  health.addTo(server);
  const port = await bindServer(server, "127.0.0.1", options.port ?? 0, options.tls);
  return { address: `127.0.0.1:${port}`, server, health };
}

const code = (result: CheckResult) => "code" in result ? grpc.status[result.code] : result.status;

Deno.test("a probe reads every answer of the health service, and UNIMPLEMENTED from a server without it", async () => {
  const { address, server, health } = await healthServer();
  const bare = createServer();
  const barePort = await bindServer(bare, "127.0.0.1", 0);
  const probe = new HealthProbe(address);
  const bareProbe = new HealthProbe(`127.0.0.1:${barePort}`);
  try {
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
    health.set("svc", "NOT_SERVING");
    assert.deepEqual(await probe.check("svc", 2_000), { status: "NOT_SERVING" });
    const unknown = await probe.check("nope", 2_000);
    assert.equal(code(unknown), "NOT_FOUND");
    assert.match("details" in unknown ? unknown.details : "", /Unknown service 'nope'/);
    assert.equal(code(await bareProbe.check("", 2_000)), "UNIMPLEMENTED");
  } finally {
    probe.close();
    bareProbe.close();
    health.close();
    await Promise.all([shutdownServer(server, 1_000), shutdownServer(bare, 1_000)]);
  }
});

Deno.test("a probe fails fast with no server, then backs off before connecting again", async () => {
  const port = freePort();
  let disconnects = 0;
  const probe = new HealthProbe(`127.0.0.1:${port}`, { onDisconnect: () => disconnects++ });
  try {
    const first = await probe.check("", 2_000);
    assert.equal(code(first), "UNAVAILABLE");
    assert.ok(disconnects >= 1);
    // Backing off (1 s at first): the next check fails at once with the same error, and does
    // not connect, so it does not call onDisconnect again.
    const seen = disconnects;
    const second = await probe.check("", 2_000);
    assert.equal(code(second), "UNAVAILABLE");
    assert.equal(disconnects, seen);
    // A server appears on the port: the probe gets there after its backoff.
    const { server, health } = await healthServer({ port });
    try {
      await waitFor(
        "a passing check",
        async () => code(await probe.check("", 2_000)) === "SERVING",
      );
    } finally {
      health.close();
      await shutdownServer(server, 1_000);
    }
  } finally {
    probe.close();
  }
});

/**
 * A server that accepts TCP and says nothing: what a hung (SIGSTOPped) server looks like to a
 * new connection, or a host cut off the network to one already open.
 */
function silentServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  return {
    address: `127.0.0.1:${listener.addr.port}`,
    accepted,
    close() {
      listener.close();
      for (const conn of accepted) conn.close();
    },
  };
}

Deno.test("a check past its deadline is DEADLINE_EXCEEDED, on a server that never answers HTTP/2", async () => {
  const server = silentServer();
  const probe = new HealthProbe(server.address);
  try {
    const result = await probe.check("", 300);
    assert.equal(code(result), "DEADLINE_EXCEEDED");
    assert.match("details" in result ? result.details : "", /no answer within 300 ms/);
  } finally {
    probe.close();
    server.close();
  }
});

Deno.test("a check that times out on a silent connection closes it, and the next check dials a new one at once", async () => {
  // A host cut off the network: nothing comes back on the connection, nothing is refused.
  const server = silentServer();
  const { accepted } = server;
  const probe = new HealthProbe(server.address);
  try {
    assert.equal(code(await probe.check("", 200)), "DEADLINE_EXCEEDED");
    await waitFor(
      "the probe to close the silent connection",
      async () => {
        const n = await accepted[0].read(new Uint8Array(1 << 16)).catch(() => null);
        return n === null;
      },
      5_000,
      0,
    );
    // No backoff: the next check is on a new connection, and times out too (not UNAVAILABLE).
    assert.equal(code(await probe.check("", 200)), "DEADLINE_EXCEEDED");
    assert.equal(accepted.length, 2);
  } finally {
    probe.close();
    server.close();
  }
});

Deno.test("a stall of the probing process longer than the deadline does not fail a check the server answers", async () => {
  const { address, server, health } = await healthServer();
  const probe = new HealthProbe(address);
  try {
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
    const pending = probe.check("", 300);
    const until = performance.now() + 800;
    while (performance.now() < until) {
      // Busy: the deadline timer fires 500 ms late, before the I/O that carries the answer.
    }
    assert.deepEqual(await pending, { status: "SERVING" });
  } finally {
    probe.close();
    health.close();
    await shutdownServer(server, 1_000);
  }
});

Deno.test("a lost connection is reported, and a server restarted on the same port passes the next check", async () => {
  const first = await healthServer();
  let disconnects = 0;
  const probe = new HealthProbe(first.address, { onDisconnect: () => disconnects++ });
  try {
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
    first.health.close();
    first.server.forceShutdown();
    await waitFor("the lost connection reported", () => disconnects === 1);
    assert.equal(code(await probe.check("", 2_000)), "UNAVAILABLE");
    const port = Number(first.address.split(":")[1]);
    const second = await healthServer({ port, status: "NOT_SERVING" });
    try {
      // The failed check above was a refused connect: the next one waits out its backoff.
      await waitFor(
        "the restarted server's answer",
        async () => code(await probe.check("", 2_000)) === "NOT_SERVING",
      );
    } finally {
      second.health.close();
      await shutdownServer(second.server, 1_000);
    }
  } finally {
    probe.close();
  }
});

Deno.test("a probe speaks TLS to an IP address, checking the certificate against it", async () => {
  const ca = read("ca.crt");
  const { address, server, health } = await healthServer({
    tls: { certPem: read("server.crt"), keyPem: read("server.key") },
  });
  const trusted = new HealthProbe(address, { tls: { caPem: ca } });
  const untrusted = new HealthProbe(address, { tls: { caPem: read("untrusted-ca.crt") } });
  const plaintext = new HealthProbe(address);
  try {
    assert.deepEqual(await trusted.check("", 2_000), { status: "SERVING" });
    assert.equal(code(await untrusted.check("", 2_000)), "UNAVAILABLE");
    assert.notEqual(code(await plaintext.check("", 2_000)), "SERVING");
  } finally {
    for (const probe of [trusted, untrusted, plaintext]) probe.close();
    health.close();
    await shutdownServer(server, 1_000);
  }
});

Deno.test("checks at once on one probe each get their own answer, up to the probe's limit", async () => {
  const { address, server, health } = await healthServer();
  health.set("svc", "NOT_SERVING");
  const probe = new HealthProbe(address);
  try {
    // One after another (each reuses the probe's state), then many at once, two services mixed.
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await probe.check(i % 2 ? "svc" : "", 2_000), {
        status: i % 2 ? "NOT_SERVING" : "SERVING",
      });
    }
    const services = Array.from(
      { length: MAX_CHECKS_PER_CONNECTION + 1 },
      (_, i) => i % 3 ? "" : "svc",
    );
    const results = await Promise.all(services.map((service) => probe.check(service, 5_000)));
    const refused = results.filter((r) => "code" in r);
    assert.equal(refused.length, 1);
    assert.equal(code(refused[0]), "UNAVAILABLE");
    assert.match("details" in refused[0] ? refused[0].details : "", /at most 100 checks at once/);
    assert.ok("code" in results[MAX_CHECKS_PER_CONNECTION]);
    for (let i = 0; i < MAX_CHECKS_PER_CONNECTION; i++) {
      assert.deepEqual(results[i], { status: services[i] === "svc" ? "NOT_SERVING" : "SERVING" });
    }
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
  } finally {
    probe.close();
    health.close();
    await shutdownServer(server, 1_000);
  }
});

Deno.test("a closed probe fails its checks and opens no connection", async () => {
  const { address, server, health } = await healthServer();
  const probe = new HealthProbe(address);
  try {
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
    probe.close();
    const result = await probe.check("", 2_000);
    assert.equal(code(result), "UNAVAILABLE");
    assert.match("details" in result ? result.details : "", /closed/);
  } finally {
    health.close();
    await shutdownServer(server, 1_000);
  }
});

Deno.test("a probe streams out-of-band ORCA from grpc-js's own OpenRcaService beside its checks, and gets UNIMPLEMENTED from a server without it", async () => {
  const { address, server, health } = await healthServer();
  const recorder = new grpc.ServerMetricRecorder();
  recorder.setCpuUtilizationMetric(0.3);
  recorder.setQpsMetric(7);
  recorder.addToServer(server);
  const bare = await healthServer();
  const probe = new HealthProbe(address);
  const bareProbe = new HealthProbe(bare.address);
  const reports: number[] = [];
  const ends: CheckResult[] = [];
  try {
    probe.streamLoad(
      50,
      (bytes) => reports.push(decodeOrcaReport(bytes).cpuUtilization!),
      (r) => ends.push(r),
    );
    await waitFor("three reports", () => reports.length >= 3);
    assert.deepEqual(reports.slice(0, 3), [0.3, 0.3, 0.3]);
    // Checks share the connection with the stream.
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
    recorder.setCpuUtilizationMetric(0.6);
    await waitFor("a report of the new load", () => reports.at(-1) === 0.6);
    assert.equal(ends.length, 0);

    const bareEnds: CheckResult[] = [];
    bareProbe.streamLoad(
      50,
      () => assert.fail("a report from a server without ORCA"),
      (r) => bareEnds.push(r),
    );
    await waitFor("the stream's end", () => bareEnds.length === 1);
    assert.equal(code(bareEnds[0]), "UNIMPLEMENTED");
    assert.deepEqual(await bareProbe.check("", 2_000), { status: "SERVING" });
  } finally {
    probe.close();
    bareProbe.close();
    health.close();
    bare.health.close();
    await Promise.all([shutdownServer(server, 1_000), shutdownServer(bare.server, 1_000)]);
  }
  // Closing the probe ended its stream, once.
  assert.equal(ends.length, 1);
  assert.equal(code(ends[0]), "UNAVAILABLE");
});

Deno.test("a streamed call outlives its first flow-control window, and a server's GOAWAY ends it so the server can shut down", async () => {
  const { address, server, health } = await healthServer();
  const MESSAGES = 1_000; // 200 KB: three times a stream's initial window
  server.addService(RAW_OPEN_RCA_SERVICE, {
    StreamCoreMetrics: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      for (let i = 0; i < MESSAGES; i++) call.write(Buffer.alloc(200, i % 256));
      // and stays open, as a report stream does
    },
  });
  const probe = new HealthProbe(address);
  const sizes: number[] = [];
  const ends: CheckResult[] = [];
  try {
    probe.streamLoad(1_000, (bytes) => sizes.push(bytes.length), (r) => ends.push(r));
    await waitFor(`${MESSAGES} messages`, () => sizes.length === MESSAGES);
    assert.ok(sizes.every((n) => n === 200));
    assert.equal(ends.length, 0);
    let shutDown = false;
    health.close();
    server.tryShutdown(() => shutDown = true);
    await waitFor("the server's graceful shutdown to finish", () => shutDown, 5_000);
    assert.equal(ends.length, 1);
    assert.equal(code(ends[0]), "UNAVAILABLE");
    assert.match("details" in ends[0] ? ends[0].details : "", /GOAWAY/);
  } finally {
    probe.close();
    server.forceShutdown();
  }
});

/** A frame: 9-byte header, then `payload`. */
function h2Frame(type: number, flags: number, stream: number, payload: number[]): Uint8Array {
  const length = payload.length;
  return Uint8Array.from([
    length >> 16,
    (length >> 8) & 0xff,
    length & 0xff,
    type,
    flags,
    0,
    0,
    0,
    stream,
    ...payload,
  ]);
}

/**
 * A hand-made HTTP/2 server: sends its SETTINGS, waits for the first request, then writes
 * `answer` (frames for stream 1) and keeps the connection until closed.
 */
function scriptedServer(answer: Uint8Array[]): { address: string; close: () => void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      (async () => {
        await conn.write(h2Frame(0x4, 0, 0, []));
        const buffer = new Uint8Array(4096);
        let seen = 0;
        // Preface (24) + SETTINGS + request HEADERS and DATA: well over 100 bytes.
        while (seen < 100) {
          const n = await conn.read(buffer).catch(() => null);
          if (n === null) return;
          seen += n;
        }
        for (const frame of answer) await conn.write(frame).catch(() => {});
      })();
    }
  })().catch(() => {});
  return {
    address: `127.0.0.1:${listener.addr.port}`,
    close: () => {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed by the probe already
        }
      }
    },
  };
}

Deno.test("a probe reads an answer split over CONTINUATION and padded frames, with a PING between", async () => {
  const headers = [
    ...encodeField(":status", "200"),
    ...encodeField("content-type", "application/grpc"),
  ];
  const server = scriptedServer([
    h2Frame(0x6, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]), // PING: answered, nothing else
    h2Frame(0x1, 0x8, 1, [2, ...headers.slice(0, 3), 0, 0]), // HEADERS, padded, no END_HEADERS
    h2Frame(0x9, 0x4, 1, headers.slice(3)), // CONTINUATION with END_HEADERS
    h2Frame(0x0, 0x8, 1, [3, 0, 0, 0, 0, 2, 0x08, 0x01, 0, 0, 0]), // DATA, padded: SERVING
    h2Frame(0x1, 0x5, 1, encodeField("grpc-status", "0")), // trailers, END_STREAM
  ]);
  const probe = new HealthProbe(server.address);
  try {
    assert.deepEqual(await probe.check("", 2_000), { status: "SERVING" });
  } finally {
    probe.close();
    server.close();
  }
});

Deno.test("a server breaking HTTP/2 fails the check with UNAVAILABLE naming why, and drops the connection", async () => {
  const cases: [string, Uint8Array[], RegExp][] = [
    [
      "a frame over 16 KiB",
      [Uint8Array.from([0x00, 0x50, 0x00, 0x0, 0, 0, 0, 0, 1])],
      /frame of 20480 bytes/,
    ],
    ["GOAWAY before the stream", [h2Frame(0x7, 0, 0, [0, 0, 0, 0, 0, 0, 0, 0])], /GOAWAY/],
    ["a header block that does not decode", [h2Frame(0x1, 0x4, 1, [0x80])], /index 0/],
    ["a PUSH_PROMISE", [h2Frame(0x5, 0x4, 1, [0, 0, 0, 2, 0x88])], /PUSH_PROMISE/],
    ["a reset stream", [h2Frame(0x3, 0, 1, [0, 0, 0, 2])], /reset, code 2/],
  ];
  for (const [what, answer, details] of cases) {
    const server = scriptedServer(answer);
    let disconnects = 0;
    const probe = new HealthProbe(server.address, { onDisconnect: () => disconnects++ });
    try {
      const result = await probe.check("", 2_000);
      assert.equal(code(result), "UNAVAILABLE", what);
      assert.match("details" in result ? result.details : "", details, what);
      // A broken connection is dropped (and reported); a reset stream keeps it.
      if (what !== "a reset stream") {
        await waitFor(`${what}: the connection dropped`, () => disconnects === 1);
      } else assert.equal(disconnects, 0);
    } finally {
      probe.close();
      server.close();
    }
  }
});
