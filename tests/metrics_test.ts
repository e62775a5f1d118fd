/**
 * `/metrics` of a real balancer (etcd discovery) and real backends: the text format parses
 * (every sample line, HELP and TYPE for every family, cumulative histogram buckets), and the
 * values count what the test did: picks and GetServer calls, load reports, tasks by type and
 * result, and a hung then a killed backend's ejection and readmission.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { createBackendClient, unary } from "../lib/wire/proto.ts";
import { startSystem } from "./_harness.ts";
import { freePort, type Started, waitFor, waitForServers } from "./_system.ts";

/** One sample line: `name{label="value",...} value`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A scrape, parsed. */
interface Scrape {
  help: Map<string, string>;
  types: Map<string, string>;
  samples: Sample[];
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
const COMMENT_LINE = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`);
const TYPES = ["counter", "gauge", "histogram", "summary", "untyped"];

function parseValue(text: string, line: string): number {
  const special: Record<string, number> = { "+Inf": Infinity, "-Inf": -Infinity, NaN: NaN };
  const value = text in special ? special[text] : Number(text);
  assert.ok(text in special || (text !== "" && !Number.isNaN(value)), `bad value in: ${line}`);
  return value;
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL_PAIR.lastIndex = 0;
  while (LABEL_PAIR.lastIndex < text.length) {
    const match = LABEL_PAIR.exec(text);
    assert.ok(match, `bad labels in: ${line}`);
    assert.ok(!(match[1] in labels), `label ${match[1]} twice in: ${line}`);
    labels[match[1]] = match[2].replace(/\\(.)/g, (_, c) => c === "n" ? "\n" : c);
  }
  return labels;
}

/** Parses Prometheus text format 0.0.4; every line must parse. */
function parseMetrics(text: string): Scrape {
  const scrape: Scrape = { help: new Map(), types: new Map(), samples: [] };
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const comment = COMMENT_LINE.exec(line);
    if (comment) {
      const [, kind, name, rest] = comment;
      const into = kind === "HELP" ? scrape.help : scrape.types;
      assert.ok(!into.has(name), `${kind} of ${name} twice`);
      if (kind === "TYPE") assert.ok(TYPES.includes(rest), `bad type in: ${line}`);
      into.set(name, rest);
      continue;
    }
    const sample = SAMPLE_LINE.exec(line);
    assert.ok(sample, `line does not parse: ${line}`);
    scrape.samples.push({
      name: sample[1],
      labels: parseLabels(sample[2] ?? "", line),
      value: parseValue(sample[3], line),
    });
  }
  return scrape;
}

/** The family a sample belongs to (a histogram's `_bucket`, `_sum`, `_count` name theirs). */
function familyOf(scrape: Scrape, name: string): string {
  if (scrape.types.has(name)) return name;
  const base = name.replace(/_(bucket|sum|count)$/, "");
  assert.equal(scrape.types.get(base), "histogram", `${name} has no TYPE line`);
  return base;
}

/** Checks the format rules and our naming conventions over a whole scrape. */
function checkScrape(scrape: Scrape): void {
  assert.deepEqual([...scrape.help.keys()].sort(), [...scrape.types.keys()].sort());
  for (const [name, type] of scrape.types) {
    assert.match(name, /^lb_/, `${name} lacks the lb_ prefix`);
    if (type === "counter") assert.match(name, /_total$/, `counter ${name} lacks _total`);
    assert.ok(scrape.help.get(name)!.length > 0, `${name} has an empty HELP`);
  }
  for (const sample of scrape.samples) familyOf(scrape, sample.name);
  for (const [name, type] of scrape.types) if (type === "histogram") checkHistogram(scrape, name);
}

/** Each series of histogram `name`: buckets cumulative, the last one +Inf and equal to the count. */
function checkHistogram(scrape: Scrape, name: string): void {
  const series = new Map<string, Sample[]>();
  for (const sample of scrape.samples.filter((s) => s.name === `${name}_bucket`)) {
    const { le: _le, ...rest } = sample.labels;
    const key = JSON.stringify(rest);
    series.set(key, [...series.get(key) ?? [], sample]);
  }
  for (const [key, buckets] of series) {
    const bounds = buckets.map((b) => parseValue(b.labels.le, `${name} le`));
    assert.deepEqual(bounds, [...bounds].sort((a, b) => a - b), `${name}${key}: le out of order`);
    assert.equal(buckets.at(-1)!.labels.le, "+Inf", `${name}${key}: no +Inf bucket`);
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i].value >= buckets[i - 1].value, `${name}${key}: not cumulative`);
    }
    assert.equal(buckets.at(-1)!.value, value(scrape, `${name}_count`, JSON.parse(key)));
  }
}

/** The value of the one sample named `name` with exactly `labels`, or `undefined`. */
function value(scrape: Scrape, name: string, labels: Record<string, string> = {}) {
  const want = JSON.stringify(Object.entries(labels).sort());
  const found = scrape.samples.filter((s) =>
    s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want
  );
  assert.ok(found.length <= 1, `${name} ${want} twice`);
  return found[0]?.value;
}

/** Fetches and parses `/metrics` on `httpPort`, checking the response and the format. */
async function scrape(httpPort: number): Promise<Scrape> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`, {
    signal: AbortSignal.timeout(5_000),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  const parsed = parseMetrics(text);
  checkScrape(parsed);
  return parsed;
}

const SIMPLE_TASKS = 24;
const HEAVY_TASKS = 6;

Deno.test("/metrics of the balancer and backends parse, and count picks, reports, tasks, ejections and readmissions", async () => {
  await using sys = await startSystem({ etcd: true });
  const balancerHttp = freePort();
  const balancer = await sys.balancer(
    sys.onEtcd("--policy", "round_robin", "--http-port", String(balancerHttp)),
  );
  const backends: (Started & { http: number })[] = [];
  for (let i = 0; i < 3; i++) {
    const http = freePort();
    const args = sys.onEtcd("--balancer", balancer.address);
    backends.push({ ...sys.backend([...args, "--http-port", String(http)]), http });
  }
  const addresses = backends.map((b) => b.address);
  const lb = sys.lbClient(balancer.address);
  await waitForServers(lb, addresses, 20_000, true);

  // Tasks through the balancer, one GetServer each (lookaside, no failure, no retry).
  const tasks = sys.taskClient({ balancer: balancer.address, clientId: "metrics-test" });
  const sent = new Map(addresses.map((a) => [a, { SIMPLE: 0, CPU_HEAVY: 0 }]));
  for (let i = 0; i < SIMPLE_TASKS + HEAVY_TASKS; i++) {
    const type = i < SIMPLE_TASKS ? "SIMPLE" : "CPU_HEAVY";
    const outcome = await tasks.run(`t${i}`, type);
    assert.ok(outcome.ok && outcome.attempts === 1, JSON.stringify(outcome));
    sent.get(outcome.server)![type]++;
  }
  const lookups = SIMPLE_TASKS + HEAVY_TASKS;
  // A type no backend accepts, straight to the first backend.
  const direct = createBackendClient(addresses[0]);
  await assert.rejects(
    unary(direct.ProcessTask, direct, { task_id: "bad", task_type: "NOPE" }),
    (error: grpc.ServiceError) => error.code === grpc.status.INVALID_ARGUMENT,
  );
  direct.close();

  const lbMetrics = await scrape(balancerHttp);
  const picks = addresses.map((server) =>
    value(lbMetrics, "lb_picks_total", { policy: "round_robin", server }) ?? 0
  );
  assert.ok(picks.every((n) => n > 0), `picks ${picks}`);
  assert.equal(picks.reduce((a, b) => a + b), lookups);
  assert.equal(value(lbMetrics, "lb_get_server_duration_seconds_count"), lookups);
  assert.ok(value(lbMetrics, "lb_get_server_duration_seconds_sum")! > 0);
  assert.equal(value(lbMetrics, "lb_servers", { state: "known" }), 3);
  assert.equal(value(lbMetrics, "lb_servers", { state: "healthy" }), 3);
  assert.ok(value(lbMetrics, "lb_load_reports_total", { result: "ok" })! > 0);
  assert.equal(value(lbMetrics, "lb_policy_info", { policy: "round_robin" }), 1);
  assert.equal(value(lbMetrics, "lb_watch_subscribers"), 0);
  assert.equal(value(lbMetrics, "lb_etcd_watch_reconnects_total"), 0);
  assert.equal(value(lbMetrics, "lb_health_ejections_total"), 0);
  assert.equal(value(lbMetrics, "lb_health_readmissions_total"), 0);
  assert.ok(value(lbMetrics, "lb_process_resident_memory_bytes")! > 0);
  assert.ok(value(lbMetrics, "lb_process_heap_used_bytes")! > 0);
  assert.ok(value(lbMetrics, "lb_process_cpu_seconds_total")! > 0);
  // Sampled every 100 ms since the balancer started, over a second ago.
  assert.ok(value(lbMetrics, "lb_event_loop_lag_seconds_count")! >= 5);
  assert.equal(
    value(lbMetrics, "lb_event_loop_lag_seconds_bucket", { le: "+Inf" }),
    value(lbMetrics, "lb_event_loop_lag_seconds_count"),
  );

  for (const [i, backend] of backends.entries()) {
    const m = await scrape(backend.http);
    const bad = i === 0 ? 1 : undefined;
    for (const type of ["SIMPLE", "CPU_HEAVY"] as const) {
      const want = sent.get(backend.address)![type];
      const ok = value(m, "lb_backend_tasks_total", { type, result: "ok" }) ?? 0;
      assert.equal(ok, want, `${backend.address} ${type}`);
      const count = value(m, "lb_backend_task_duration_seconds_count", { type }) ?? 0;
      assert.equal(count, want, `${backend.address} ${type} durations`);
    }
    assert.equal(
      value(m, "lb_backend_tasks_total", { type: "other", result: "invalid_argument" }),
      bad,
    );
    assert.equal(value(m, "lb_backend_queue_length"), 0);
    assert.equal(value(m, "lb_backend_tasks_in_flight"), 0);
    assert.ok(value(m, "lb_backend_cpu_seconds_total")! > 0);
    assert.ok(value(m, "lb_process_resident_memory_bytes")! > 0);
  }

  // A hung backend is ejected, then readmitted when it resumes.
  const healthy = async () => value(await scrape(balancerHttp), "lb_servers", { state: "healthy" });
  backends[1].process.signal("SIGSTOP");
  await waitFor("the hung backend to be ejected", async () => (await healthy()) === 2);
  backends[1].process.signal("SIGCONT");
  await waitFor("the backend to be readmitted", async () => (await healthy()) === 3);
  let after = await scrape(balancerHttp);
  assert.equal(value(after, "lb_health_ejections_total"), 1);
  assert.equal(value(after, "lb_health_readmissions_total"), 1);

  // A killed one is ejected, and stays so.
  backends[2].process.signal("SIGKILL");
  await backends[2].process.status;
  await waitFor("the killed backend to be ejected", async () => (await healthy()) === 2);
  after = await scrape(balancerHttp);
  assert.equal(value(after, "lb_health_ejections_total"), 2);
  assert.equal(value(after, "lb_health_readmissions_total"), 1);
});

Deno.test("/metrics counts the balancer's etcd watch coming back after its connection was cut", async () => {
  await using sys = await startSystem({ etcd: true });
  const proxy = sys.proxy();
  const http = freePort();
  const balancer = await sys.balancer(["--etcd", proxy.endpoint, "--http-port", String(http)]);
  const log = () => balancer.process.log();
  const reconnects = async () => value(await scrape(http), "lb_etcd_watch_reconnects_total");
  // The servers' watch: the balancer also watches /balancers/, whose lines must not count.
  await waitFor("the balancer to watch etcd", () => /Watching \/servers\/ in etcd/.test(log()));
  assert.equal(await reconnects(), 0);

  proxy.cut();
  await waitFor(
    "the balancer to lose its watch",
    () => /Lost the etcd watch of \/servers\//.test(log()),
  );
  assert.equal(await reconnects(), 0);
  proxy.restore();
  await waitFor("the watch to come back", async () => (await reconnects()) === 1, 20_000);
});
