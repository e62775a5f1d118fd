/**
 * Why a task failed: the cause of its last attempt in the client's summary (`failureCauses`),
 * from real balancer and client processes, and the text rendering of it.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { spawnEntry } from "../lib/harness/entry_process.ts";
import {
  type FailureCause,
  type LoadRunSummary,
  MAX_FAILURE_CAUSES,
  MAX_FAILURE_MESSAGE_CHARS,
  runLoad,
} from "../lib/client/load_run.ts";
import { unary } from "../lib/wire/proto.ts";
import { formatSummary } from "../lib/client/summary_text.ts";
import { TaskClient, type TaskOutcome } from "../lib/client/task_client.ts";
import { startSystem } from "./_harness.ts";
import { freePort, waitForServers } from "./_system.ts";

/** Balancer flags that keep a server in the picks: no health checks, a TTL of ten minutes. */
const NO_EJECTION = ["--builtin-ttl-ms", "600000", "--health-interval-ms", "0"];

/** Runs the client entry to completion and returns its exit code, stdout and log. */
async function runClient(args: string[]) {
  const client = spawnEntry("client", ["--requests", "3", ...args], { captureStdout: true });
  const status = await client.status;
  return { code: status.code, out: client.stdout(), log: client.log() };
}

Deno.test("client --json names the cause and the server when a registered server refuses connections", async () => {
  await using sys = await startSystem();
  // No health checks, and a long TTL: the dead server stays in the picks, as one that has just
  // died would until the balancer notices.
  const balancer = await sys.balancer(NO_EJECTION);
  const dead = `127.0.0.1:${freePort()}`;
  const lb = sys.lbClient(balancer.address);
  await unary(lb.RegisterServer, lb, { server_address: dead }, {
    deadline: Date.now() + 5_000,
  });
  await waitForServers(lb, [dead]);
  const run = await runClient(["--balancer", balancer.address, "--json"]);
  assert.equal(run.code, 1, run.log);
  const summary = JSON.parse(run.out);
  assert.equal(summary.failed, 3);
  assert.deepEqual(summary.failuresByCode, { UNAVAILABLE: 3 });
  assert.equal(summary.otherFailures, 0);
  const causes = summary.failureCauses as FailureCause[];
  assert.equal(causes.reduce((n, c) => n + c.count, 0), 3, JSON.stringify(causes));
  for (const cause of causes) {
    assert.equal(cause.code, "UNAVAILABLE");
    assert.equal(cause.server, dead, JSON.stringify(cause));
    assert.match(cause.message, /ECONNREFUSED|refused/);
    assert.ok(cause.message.includes(dead), cause.message);
    // Every attempt went to the one server there is; the message says it was retried.
    assert.match(cause.message, /^after 3 attempts \(/);
  }
});

Deno.test("client names the balancer and its cause when nothing listens there", async () => {
  const nowhere = `127.0.0.1:${freePort()}`;
  const json = await runClient(["--balancer", nowhere, "--json"]);
  assert.equal(json.code, 1, json.log);
  const summary = JSON.parse(json.out);
  assert.deepEqual(summary.failuresByCode, { UNAVAILABLE: 3 });
  const causes = summary.failureCauses as FailureCause[];
  assert.equal(causes.length, 1, JSON.stringify(causes));
  assert.equal(causes[0].server, undefined);
  assert.equal(causes[0].count, 3);
  assert.match(causes[0].message, new RegExp(`^GetServer to balancer ${nowhere} failed: `));
  assert.match(causes[0].message, new RegExp(`ECONNREFUSED ${nowhere}`));

  const text = await runClient(["--balancer", nowhere]);
  assert.equal(text.code, 1, text.log);
  const lines = text.out.split("\n");
  const section = lines.indexOf("failures");
  assert.ok(section > 0, text.out);
  assert.match(
    lines[section + 1],
    new RegExp(`^  UNAVAILABLE ×3: GetServer to balancer ${nowhere}`),
  );
});

Deno.test("TaskClient says why a name did not resolve: Deno's net permission (getaddrinfo EPERM)", async () => {
  // These tests may reach 127.0.0.1 alone, so `localhost` is refused before any DNS query.
  const address = `localhost:${freePort()}`;
  const client = new TaskClient({ direct: [address], clientId: "eperm", maxAttempts: 1 });
  try {
    const outcome = await client.run("t-1", "SIMPLE");
    assert.ok(!outcome.ok);
    assert.equal(outcome.code, grpc.status.UNAVAILABLE);
    assert.equal(outcome.server, address);
    assert.equal(
      outcome.message,
      `Name resolution failed for target dns:${address}: getaddrinfo EPERM localhost ` +
        "(not allowed by Deno's --allow-net)",
    );
  } finally {
    client.close();
  }
});

Deno.test("TaskClient names the connection error behind a GetServer deadline on a balancer that went away", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer(NO_EJECTION);
  const lb = sys.lbClient(balancer.address);
  const client = sys.taskClient({
    balancer: balancer.address,
    clientId: "deadline",
    lookupTimeoutMs: 1_000,
  });
  await unary(lb.RegisterServer, lb, { server_address: `127.0.0.1:${freePort()}` }, {
    deadline: Date.now() + 5_000,
  });
  // Once the lone balancer has answered, the client waits for it (until the deadline) when
  // it is gone, instead of failing at once.
  await client.getServer();
  await balancer.process.stop();
  const outcome = await client.run("t-1", "SIMPLE");
  assert.ok(!outcome.ok);
  assert.equal(outcome.code, grpc.status.DEADLINE_EXCEEDED);
  assert.match(
    outcome.message,
    new RegExp(`^GetServer to balancer ${balancer.address} failed: `),
  );
  assert.match(
    outcome.message,
    new RegExp(`; the connection failed: .*ECONNREFUSED ${balancer.address}`),
  );
});

/** A stand-in client whose tasks end with the given outcomes, in turn. */
function scriptedClient(outcomes: TaskOutcome[]): TaskClient {
  let next = 0;
  return {
    run: () => Promise.resolve(outcomes[next++ % outcomes.length]),
  } as unknown as TaskClient;
}

/** A failed outcome: UNAVAILABLE after one attempt. */
function failure(message: string, server?: string): TaskOutcome {
  return { ok: false, server, code: grpc.status.UNAVAILABLE, message, attempts: 1 };
}

Deno.test("runLoad() keeps the first MAX_FAILURE_CAUSES causes, most frequent first, and counts the rest", async () => {
  const long = "x".repeat(MAX_FAILURE_MESSAGE_CHARS + 50);
  const outcomes = [
    ...Array.from({ length: MAX_FAILURE_CAUSES }, (_, i) => failure(`cause ${i}`, "127.0.0.1:1")),
    failure("cause 3", "127.0.0.1:1"),
    failure("cause 3", "127.0.0.1:2"),
    failure(long),
    { ok: true as const, server: "127.0.0.1:1", result: "", attempts: 1 },
  ];
  const summary = await runLoad({
    client: scriptedClient(outcomes),
    taskType: "SIMPLE",
    requests: outcomes.length,
    concurrency: 1,
  });
  assert.equal(summary.failed, outcomes.length - 1);
  // "cause 3" from 127.0.0.1:2 and the long one came once the table was full.
  assert.equal(summary.failureCauses.length, MAX_FAILURE_CAUSES);
  assert.equal(summary.otherFailures, 2);
  assert.deepEqual(summary.failureCauses[0], {
    code: "UNAVAILABLE",
    message: "cause 3",
    server: "127.0.0.1:1",
    count: 2,
  });
  assert.equal(summary.failureCauses[1].message, "cause 0");

  const cut = await runLoad({
    client: scriptedClient([failure(long)]),
    taskType: "SIMPLE",
    requests: 1,
    concurrency: 1,
  });
  assert.equal(cut.failureCauses[0].message.length, MAX_FAILURE_MESSAGE_CHARS);
  assert.ok(cut.failureCauses[0].message.endsWith("..."));
  assert.equal("server" in cut.failureCauses[0], false);
});

/** A summary of a run with the given failures. */
function summaryWith(failureCauses: FailureCause[], otherFailures = 0): LoadRunSummary {
  const failed = failureCauses.reduce((n, c) => n + c.count, otherFailures);
  return {
    requests: 10 + failed,
    succeeded: 10,
    failed,
    failuresByCode: failed ? { UNAVAILABLE: failed } : {},
    failureCauses,
    otherFailures,
    retried: 0,
    durationS: 1,
    throughput: 10,
    latencyMs: { p50: 1, p90: 2, p99: 3, max: 4, mean: 1.5 },
    perServer: { "127.0.0.1:50053": 10 },
    histogram: "",
  };
}

Deno.test("formatSummary() lists each failure cause with its count and server, then the others", () => {
  const text = formatSummary(summaryWith([
    {
      code: "UNAVAILABLE",
      message: "No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:50052",
      server: "127.0.0.1:50052",
      count: 30,
    },
    {
      code: "DEADLINE_EXCEEDED",
      message: "GetServer to balancer 127.0.0.1:50051 failed: Deadline exceeded",
      count: 2,
    },
  ], 5));
  const lines = text.split("\n");
  assert.equal(lines[0], "requests    47 (10 ok, 37 failed: UNAVAILABLE 37; 0 retried)");
  assert.deepEqual(lines.slice(lines.indexOf("failures")), [
    "failures",
    "  UNAVAILABLE ×30 from 127.0.0.1:50052: No connection established. Last error: Error: " +
    "connect ECONNREFUSED 127.0.0.1:50052",
    "  DEADLINE_EXCEEDED ×2: GetServer to balancer 127.0.0.1:50051 failed: Deadline exceeded",
    "  other causes ×5",
  ]);
});

Deno.test("formatSummary() has no failures section when nothing failed", () => {
  const text = formatSummary(summaryWith([]));
  assert.equal(text.split("\n").includes("failures"), false);
  assert.equal(text.split("\n").at(-1), "  127.0.0.1:50053               10  100.0%");
});
