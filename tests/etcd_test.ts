/**
 * etcd registration and discovery: pure tests of the value format, then integration tests
 * against a real `etcd` process per test (see `_etcd.ts`).
 */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import type { Etcd3 } from "etcd3";
import { retryDelayMs } from "../lib/wire/backoff.ts";
import type { EtcdClientOptions } from "../lib/etcd/etcd_client.ts";
import { parseServerValue } from "../lib/etcd/etcd_layout.ts";
import { EtcdDiscovery } from "../lib/etcd/etcd_discovery.ts";
import { EtcdRegistration } from "../lib/etcd/etcd_registration.ts";
import { ServerSet } from "../lib/picking/server_set.ts";
import type { EtcdProcess, StartEtcdOptions, TcpProxy } from "./_etcd.ts";
import { startSystem } from "./_harness.ts";
import { waitFor } from "./_system.ts";

const PREFIX = "/servers/";
/** Generous: etcd3 and grpc-js reconnect with backoff after an outage. */
const RECOVERY_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// parseServerValue (pure)

Deno.test("parseServerValue() accepts a bare host:port as the original system wrote it", () => {
  assert.deepEqual(parseServerValue("/servers/10.0.0.1:50051", "10.0.0.1:50051", PREFIX), {
    ok: true,
    address: "10.0.0.1:50051",
  });
  assert.deepEqual(parseServerValue("/servers/a", "backend-1.local:8080\n", PREFIX), {
    ok: true,
    address: "backend-1.local:8080",
  });
});

Deno.test("parseServerValue() accepts JSON with an address and ignores other fields", () => {
  const value = JSON.stringify({ address: "[::1]:9000", weight: 3, zone: "a" });
  assert.deepEqual(parseServerValue("/servers/x", value, PREFIX), {
    ok: true,
    address: "[::1]:9000",
  });
});

Deno.test("parseServerValue() rejects malformed values with a reason", () => {
  const cases: [value: string, reason: RegExp][] = [
    ["", /empty/],
    ["{not json", /not valid JSON/],
    ['{"host":"a","port":1}', /no 'address' field/],
    ['{"address":50051}', /'address' field is not a string/],
    ['["10.0.0.1:1"]', /is invalid/], // only '{' starts JSON: '[' starts an IPv6 host
    ["null", /address 'null' is invalid/],
    ["10.0.0.1:0", /port is out of range/],
    ["10.0.0.1:99999", /port is out of range/],
    ['{"address":"10.0.0.1:http"}', /port is not a number/],
    ["10.0.0.1", /no ':port'/],
    ["x".repeat(10_000), /longer than/],
  ];
  for (const [value, reason] of cases) {
    const parsed = parseServerValue("/servers/k", value, PREFIX);
    assert.equal(parsed.ok, false, `accepted ${JSON.stringify(value.slice(0, 40))}`);
    assert.match((parsed as { reason: string }).reason, reason);
  }
});

Deno.test("parseServerValue() rejects keys outside the prefix or with no name", () => {
  assert.match(reasonOf(parseServerValue("/other/a", "10.0.0.1:1", PREFIX)), /not under/);
  assert.match(reasonOf(parseServerValue("/servers/", "10.0.0.1:1", PREFIX)), /no name/);
});

Deno.test("retryDelayMs() grows by 1.6 from 1 s with 20% jitter and a 120 s cap (gRPC's connection backoff)", () => {
  assert.equal(retryDelayMs(0, {}, () => 0.5), 1_000);
  assert.equal(retryDelayMs(1, {}, () => 0.5), 1_600);
  assert.equal(retryDelayMs(0, {}, () => 0), 800);
  assert.equal(retryDelayMs(0, {}, () => 1), 1_200);
  assert.equal(retryDelayMs(50, {}, () => 0.5), 120_000);
});

function reasonOf(parsed: ReturnType<typeof parseServerValue>): string {
  return parsed.ok ? "" : parsed.reason;
}

// ---------------------------------------------------------------------------------------------
// Integration: a real etcd per test

interface Env {
  etcd: EtcdProcess;
  /** The test's own client, to arrange and inspect etcd (never the one under test). */
  admin: Etcd3;
  logs: LogRecord[];
  /** A client for the code under test; closed after the test. */
  client(endpoint?: string, options?: EtcdClientOptions): Etcd3;
  /** Starts a TCP proxy to etcd, to cut the code under test off; closed after the test. */
  startProxy(): TcpProxy;
}

/** Runs `fn` with a fresh etcd and captured logs, and releases everything afterwards. */
function withEtcd(
  fn: (env: Env) => Promise<void>,
  etcdOptions: StartEtcdOptions = {},
): () => Promise<void> {
  return async () => {
    const logs: LogRecord[] = [];
    await configure({
      reset: true,
      sinks: { capture: (record) => logs.push(record) },
      loggers: [
        { category: ["lb"], lowestLevel: "debug", sinks: ["capture"] },
        { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["capture"] },
      ],
    });
    try {
      await using sys = await startSystem({ etcd: etcdOptions });
      const { etcd } = sys;
      const client = (endpoint = etcd.endpoint, options?: EtcdClientOptions) =>
        sys.etcdClient([endpoint], options);
      try {
        await fn({ etcd, admin: client(), logs, client, startProxy: () => sys.proxy() });
      } catch (error) {
        // The library's own account of what happened is the best clue to a failure.
        for (const record of logs) console.error(formatRecord(record));
        console.error(`etcd log: ${etcd.dataDir}/etcd.log (removed after the test)`);
        throw error;
      }
    } finally {
      await reset();
    }
  };
}

function formatRecord(record: LogRecord): string {
  const message = record.message.map((part) =>
    typeof part === "string" ? part : part instanceof Error ? part.message : JSON.stringify(part)
  ).join("");
  return `[${record.level}] ${record.category.join(".")}: ${message}`;
}

async function keyOf(admin: Etcd3, key: string): Promise<{ value: string; lease: string } | null> {
  const response = await admin.get(key).exec();
  const kv = response.kvs[0];
  return kv === undefined ? null : { value: kv.value.toString(), lease: kv.lease };
}

function sorted(set: ServerSet): string[] {
  return set.addresses().sort();
}

// -- EtcdRegistration -------------------------------------------------------------------------

Deno.test(
  "EtcdRegistration.start() puts the key under a lease and stop() deletes it and revokes the lease",
  withEtcd(async ({ admin, client }) => {
    const registration = new EtcdRegistration({
      client: client(),
      prefix: PREFIX,
      address: "127.0.0.1:50051",
      ttlS: 5,
      value: "127.0.0.1:50051",
    });
    try {
      await registration.start();
      assert.equal(registration.registered, true);
      const stored = await keyOf(admin, "/servers/127.0.0.1:50051");
      assert.ok(stored !== null, "the key was not written");
      assert.equal(stored.value, "127.0.0.1:50051");
      assert.notEqual(stored.lease, "0", "the key is not held by a lease");
      assert.equal(stored.lease, registration.leaseId);

      await registration.stop();
      assert.equal(registration.registered, false);
      assert.equal(await keyOf(admin, "/servers/127.0.0.1:50051"), null);
      // etcd3's internal lease client: a TTL of -1 means the lease no longer exists.
      const ttl = await admin.leaseClient.leaseTimeToLive({ ID: stored.lease });
      assert.equal(ttl.TTL, "-1");
    } finally {
      await registration.stop();
    }
  }),
);

Deno.test(
  "EtcdRegistration.stop() of an old process leaves the key a restarted one at the same address wrote under its own lease",
  withEtcd(async ({ admin, client }) => {
    const key = "/servers/127.0.0.1:50054";
    const options = { prefix: PREFIX, address: "127.0.0.1:50054", ttlS: 5, value: "x" };
    const old = new EtcdRegistration({ ...options, client: client() });
    const restarted = new EtcdRegistration({ ...options, client: client() });
    try {
      await old.start();
      await restarted.start();
      // The old one's stop comes late (its delete was held up while etcd was out of reach).
      await old.stop();
      const stored = await keyOf(admin, key);
      assert.ok(stored !== null, "the restarted process's key was deleted");
      assert.equal(stored.lease, restarted.leaseId);
      await restarted.stop();
      assert.equal(await keyOf(admin, key), null);
    } finally {
      await old.stop();
      await restarted.stop();
    }
  }),
);

Deno.test(
  "EtcdRegistration registers again under a new lease when its lease is revoked",
  withEtcd(async ({ admin, client, logs }) => {
    const key = "/servers/127.0.0.1:50052";
    const registration = new EtcdRegistration({
      client: client(),
      prefix: PREFIX,
      address: "127.0.0.1:50052",
      ttlS: 2,
      value: JSON.stringify({ address: "127.0.0.1:50052" }),
      backoff: { initialMs: 100 },
    });
    try {
      await registration.start();
      const first = await keyOf(admin, key);
      assert.ok(first !== null);

      await admin.leaseClient.leaseRevoke({ ID: first.lease });
      // The key is back as soon as the put lands; the registration counts it once the put's
      // answer arrives, a moment later: wait for both.
      const again = await waitFor("the key back under a new lease", async () => {
        const stored = await keyOf(admin, key);
        return stored !== null && stored.lease !== first.lease &&
            registration.leaseId === stored.lease
          ? stored
          : null;
      }, RECOVERY_TIMEOUT_MS);

      assert.ok(again !== null);
      assert.equal(again.value, JSON.stringify({ address: "127.0.0.1:50052" }));
      assert.equal(registration.reRegistrations, 1);
      assert.equal(registration.registered, true);
      assert.equal(registration.leaseId, again.lease);
      assert.ok(
        logs.some((r) => r.level === "warning" && String(r.rawMessage).includes("Lost the lease")),
      );
    } finally {
      await registration.stop();
    }
    assert.equal(await keyOf(admin, key), null);
  }),
);

Deno.test(
  "EtcdRegistration registers again after etcd was down longer than twice the TTL",
  withEtcd(async ({ etcd, admin, client }) => {
    const key = "/servers/127.0.0.1:50053";
    const registration = new EtcdRegistration({
      client: client(),
      prefix: PREFIX,
      address: "127.0.0.1:50053",
      ttlS: 1,
      value: "127.0.0.1:50053",
      backoff: { initialMs: 200, maxMs: 1_000 },
      stopTimeoutMs: 1_000,
    });
    try {
      await registration.start();
      const first = await keyOf(admin, key);
      assert.ok(first !== null);

      await etcd.stop();
      await waitFor("etcd3 to declare the lease lost", () => !registration.registered);
      await etcd.start();

      await waitFor("the key back under a new lease", async () => {
        const stored = await keyOf(admin, key);
        return registration.registered && stored !== null && stored.lease === registration.leaseId;
      }, RECOVERY_TIMEOUT_MS);
      assert.notEqual(registration.leaseId, first.lease);
      assert.equal(registration.reRegistrations, 1);
    } finally {
      await registration.stop();
    }
  }),
);

Deno.test(
  "EtcdRegistration.start() waits for etcd, and stop() returns while etcd is down",
  withEtcd(async ({ etcd, admin, client }) => {
    await etcd.stop();
    const registration = new EtcdRegistration({
      client: client(),
      prefix: PREFIX,
      address: "127.0.0.1:50054",
      ttlS: 5,
      value: "127.0.0.1:50054",
      backoff: { initialMs: 200, maxMs: 1_000 },
      stopTimeoutMs: 1_000,
    });
    try {
      const started = registration.start();
      await etcd.start();
      await started;
      assert.equal((await keyOf(admin, "/servers/127.0.0.1:50054"))?.value, "127.0.0.1:50054");

      await etcd.stop();
      await registration.stop(); // bounded by stopTimeoutMs, etcd being down
      assert.equal(registration.registered, false);
    } finally {
      await registration.stop();
    }
  }),
);

// -- EtcdDiscovery ----------------------------------------------------------------------------

Deno.test(
  "EtcdDiscovery lists existing servers then follows puts and deletes",
  withEtcd(async ({ admin, client }) => {
    await admin.put("/servers/10.0.0.1:1").value("10.0.0.1:1");
    await admin.put("/servers/b").value(JSON.stringify({ address: "10.0.0.2:2", weight: 1 }));
    await admin.put("/other/10.0.0.9:9").value("10.0.0.9:9");
    const set = new ServerSet();
    const discovery = new EtcdDiscovery({ client: client(), prefix: PREFIX, set });
    try {
      assert.equal(await discovery.start(), true);
      assert.deepEqual(sorted(set), ["10.0.0.1:1", "10.0.0.2:2"]);
      await waitFor("the watch to connect", () => discovery.connected);

      await admin.put("/servers/10.0.0.3:3").value("10.0.0.3:3");
      await waitFor("a put to add a server", () => set.has("10.0.0.3:3"));
      await admin.delete().key("/servers/10.0.0.1:1");
      await waitFor("a delete to remove a server", () => !set.has("10.0.0.1:1"));
      await admin.put("/servers/b").value("10.0.0.4:4");
      await waitFor("a changed value to move the server", () => set.has("10.0.0.4:4"));
      assert.deepEqual(sorted(set), ["10.0.0.3:3", "10.0.0.4:4"]);

      const { header } = await admin.getAll().prefix(PREFIX).exec();
      await waitFor(
        "the revision to catch up",
        () => discovery.revision >= Number(header.revision),
      );
      assert.equal(discovery.lists, 1);
    } finally {
      await discovery.stop();
    }
  }),
);

Deno.test(
  "EtcdDiscovery skips invalid values with a warning and never adds a phantom server",
  withEtcd(async ({ admin, client, logs }) => {
    await admin.put("/servers/good").value("10.0.0.1:1");
    await admin.put("/servers/bad-json").value("{not json");
    await admin.put("/servers/bad-port").value("10.0.0.2:0");
    const set = new ServerSet();
    const discovery = new EtcdDiscovery({ client: client(), prefix: PREFIX, set });
    try {
      await discovery.start();
      assert.deepEqual(sorted(set), ["10.0.0.1:1"]);
      const warned = (key: string) =>
        logs.some((r) => r.level === "warning" && r.properties.key === key);
      assert.ok(warned("/servers/bad-json"), "no warning named /servers/bad-json");
      assert.ok(warned("/servers/bad-port"), "no warning named /servers/bad-port");

      // A valid key that turns invalid takes its server with it.
      await admin.put("/servers/good").value('{"addr":"10.0.0.1:1"}');
      await waitFor("the server of a key turned invalid to leave", () => set.size === 0);
      // Deleting a key that never parsed changes nothing; a marker put shows it was processed.
      await admin.delete().key("/servers/bad-json");
      await admin.put("/servers/bad-port").value("10.0.0.2:2");
      await waitFor("the fixed key to add its server", () => set.has("10.0.0.2:2"));
      assert.deepEqual(sorted(set), ["10.0.0.2:2"]);

      // Two keys naming one server: it stays until both are gone.
      await admin.put("/servers/dup").value("10.0.0.2:2");
      await admin.delete().key("/servers/bad-port");
      await admin.put("/servers/marker").value("10.0.0.5:5");
      await waitFor("the marker server", () => set.has("10.0.0.5:5"));
      assert.deepEqual(sorted(set), ["10.0.0.2:2", "10.0.0.5:5"]);
      assert.ok(warned("/servers/good"));
    } finally {
      await discovery.stop();
    }
  }),
);

Deno.test(
  "EtcdDiscovery keeps its set while etcd is down and follows changes after a restart",
  withEtcd(async ({ etcd, admin, client, logs }) => {
    await admin.put("/servers/10.0.0.1:1").value("10.0.0.1:1");
    await admin.put("/servers/10.0.0.2:2").value("10.0.0.2:2");
    const set = new ServerSet();
    const discovery = new EtcdDiscovery({ client: client(), prefix: PREFIX, set });
    try {
      await discovery.start();
      await waitFor("the watch to connect", () => discovery.connected);

      await etcd.stop();
      await waitFor("the discovery to notice", () => !discovery.connected);
      assert.deepEqual(sorted(set), ["10.0.0.1:1", "10.0.0.2:2"]);

      await etcd.start();
      // Made at once after the restart, most likely before the watch is back: the watch must
      // resume from its last revision and replay them.
      await admin.put("/servers/10.0.0.3:3").value("10.0.0.3:3");
      await admin.delete().key("/servers/10.0.0.1:1");
      await waitFor("the changes made after the restart", () => {
        return set.has("10.0.0.3:3") && !set.has("10.0.0.1:1");
      }, RECOVERY_TIMEOUT_MS);
      await waitFor("the watch to reconnect", () => discovery.connected, RECOVERY_TIMEOUT_MS);

      await admin.put("/servers/10.0.0.4:4").value("10.0.0.4:4");
      await waitFor("a put after the reconnect", () => set.has("10.0.0.4:4"));
      assert.deepEqual(sorted(set), ["10.0.0.2:2", "10.0.0.3:3", "10.0.0.4:4"]);
      assert.equal(discovery.lists, 1, "the watch resumed without listing again");
      const outageWarnings = logs.filter((r) =>
        String(r.rawMessage).startsWith("Lost the etcd watch")
      );
      assert.equal(outageWarnings.length, 1, "one warning per outage");
    } finally {
      await discovery.stop();
    }
  }),
);

Deno.test(
  "EtcdDiscovery notices a frozen etcd through keepalive pings and keeps its set meanwhile",
  withEtcd(async ({ etcd, admin, client }) => {
    await admin.put("/servers/10.0.0.1:1").value("10.0.0.1:1");
    const set = new ServerSet();
    const discovery = new EtcdDiscovery({
      // Pings this frequent need etcd's consent (--grpc-keepalive-min-time below).
      client: client(etcd.endpoint, { keepaliveTimeMs: 500, keepaliveTimeoutMs: 500 }),
      prefix: PREFIX,
      set,
    });
    try {
      await discovery.start();
      await waitFor("the watch to connect", () => discovery.connected);

      etcd.pause();
      try {
        // A frozen etcd closes nothing: only the unanswered pings tell.
        await waitFor("the discovery to notice", () => !discovery.connected, RECOVERY_TIMEOUT_MS);
        assert.deepEqual(sorted(set), ["10.0.0.1:1"]);
      } finally {
        etcd.resume();
      }

      await admin.put("/servers/10.0.0.2:2").value("10.0.0.2:2");
      await waitFor("a put after the thaw", () => set.has("10.0.0.2:2"), RECOVERY_TIMEOUT_MS);
      await waitFor("the watch to reconnect", () => discovery.connected, RECOVERY_TIMEOUT_MS);
    } finally {
      await discovery.stop();
    }
  }, { args: ["--grpc-keepalive-min-time=100ms"] }),
);

Deno.test(
  "EtcdDiscovery replays changes made while its own connection was cut",
  withEtcd(async ({ admin, client, startProxy }) => {
    const proxy = startProxy();
    const set = new ServerSet();
    const discovery = new EtcdDiscovery({ client: client(proxy.endpoint), prefix: PREFIX, set });
    try {
      await admin.put("/servers/10.0.0.1:1").value("10.0.0.1:1");
      await discovery.start();
      await waitFor("the watch to connect", () => discovery.connected);

      proxy.cut();
      await waitFor("the discovery to notice the cut", () => !discovery.connected);
      await admin.put("/servers/10.0.0.2:2").value("10.0.0.2:2");
      await admin.put("/servers/10.0.0.3:3").value("10.0.0.3:3");
      await admin.delete().key("/servers/10.0.0.1:1");
      await admin.delete().key("/servers/10.0.0.3:3");
      assert.deepEqual(sorted(set), ["10.0.0.1:1"], "the set changed while cut off");

      proxy.restore();
      await waitFor("the changes made while cut off", () => {
        return set.size === 1 && set.has("10.0.0.2:2");
      }, RECOVERY_TIMEOUT_MS);
      assert.equal(discovery.lists, 1, "the watch resumed without listing again");
    } finally {
      await discovery.stop();
    }
  }),
);

Deno.test(
  "EtcdDiscovery lists again when the revision it resumes from was compacted",
  withEtcd(async ({ admin, client, startProxy }) => {
    const proxy = startProxy();
    const set = new ServerSet();
    const discovery = new EtcdDiscovery({ client: client(proxy.endpoint), prefix: PREFIX, set });
    try {
      await admin.put("/servers/10.0.0.1:1").value("10.0.0.1:1");
      await admin.put("/servers/10.0.0.2:2").value("10.0.0.2:2");
      await discovery.start();
      await waitFor("the watch to connect", () => discovery.connected);

      proxy.cut();
      await waitFor("the discovery to notice the cut", () => !discovery.connected);
      await admin.delete().key("/servers/10.0.0.1:1");
      await admin.put("/servers/10.0.0.3:3").value("10.0.0.3:3");
      const { header } = await admin.put("/servers/10.0.0.4:4").value("bad value").exec();
      // etcd3's internal KV client: drop the history the watch would resume from.
      await admin.kv.compact({ revision: header.revision, physical: true });

      proxy.restore();
      await waitFor(
        "a second list after the compaction",
        () => discovery.lists === 2,
        RECOVERY_TIMEOUT_MS,
      );
      assert.deepEqual(sorted(set), ["10.0.0.2:2", "10.0.0.3:3"]);
      assert.ok(discovery.revision >= Number(header.revision));

      // ...and it watches again from the new revision.
      await admin.put("/servers/10.0.0.5:5").value("10.0.0.5:5");
      await waitFor("a put after the relist", () => set.has("10.0.0.5:5"), RECOVERY_TIMEOUT_MS);
    } finally {
      await discovery.stop();
    }
  }),
);

Deno.test(
  "EtcdDiscovery.start() resolves false while etcd is down and syncs once it is up",
  withEtcd(async ({ etcd, admin, client }) => {
    await admin.put("/servers/10.0.0.1:1").value("10.0.0.1:1");
    await etcd.stop();
    const set = new ServerSet();
    set.add("10.0.0.9:9"); // e.g. what a previous run knew: kept until etcd answers
    const discovery = new EtcdDiscovery({
      client: client(),
      prefix: PREFIX,
      set,
      startTimeoutMs: 300,
      backoff: { initialMs: 200, maxMs: 1_000 },
    });
    try {
      assert.equal(await discovery.start(), false);
      assert.equal(discovery.synced, false);
      assert.deepEqual(sorted(set), ["10.0.0.9:9"]);

      await etcd.start();
      await waitFor("the first list", () => discovery.synced, RECOVERY_TIMEOUT_MS);
      assert.deepEqual(sorted(set), ["10.0.0.1:1"]);
      await admin.put("/servers/10.0.0.2:2").value("10.0.0.2:2");
      await waitFor("a put after the first list", () => set.has("10.0.0.2:2"), RECOVERY_TIMEOUT_MS);
    } finally {
      await discovery.stop();
    }
  }),
);
