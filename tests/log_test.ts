/**
 * Logs: every line stays one line; `--log-format json` writes JSON Lines whose fields are the
 * record's properties (a server's `address`); nothing logs on the pick path.
 */
import assert from "node:assert/strict";
import { jsonFormatter, renderValue } from "../lib/runtime/log.ts";
import { startSystem } from "./_harness.ts";
import { waitFor } from "./_system.ts";

Deno.test("errors are logged as their message (and cause) on one line, without a stack", () => {
  const inspect = (v: unknown) => Deno.inspect(v);
  const error = new Error("connect failed\n    at somewhere", { cause: new Error("ECONNREFUSED") });
  assert.equal(renderValue(error, inspect), "connect failed at somewhere (cause: ECONNREFUSED)");
  assert.equal(renderValue("bare text", inspect), "bare text");
  assert.equal(renderValue({ a: 1 }, inspect), "{ a: 1 }");
});

Deno.test("jsonFormatter() writes one JSON object with the properties as fields, errors as text", () => {
  const line = jsonFormatter()({
    category: ["lb", "health"],
    level: "warning",
    message: ["Server ", "127.0.0.1:1", " ejected: ", new Error("refused\nat x"), ""],
    rawMessage: "Server {address} ejected: {error}",
    properties: { address: "127.0.0.1:1", error: new Error("refused\nat x"), count: 2 },
    timestamp: 0,
  });
  assert.ok(line.endsWith("\n") && !line.slice(0, -1).includes("\n"));
  assert.deepEqual(JSON.parse(line), {
    "@timestamp": "1970-01-01T00:00:00.000Z",
    level: "WARN",
    logger: "lb.health",
    message: "Server 127.0.0.1:1 ejected: refused at x",
    address: "127.0.0.1:1",
    error: "refused at x",
    count: 2,
  });
});

Deno.test("no logging on the pick path: lib/picking/ and policies/ have no logger", async () => {
  const files = [
    new URL("../lib/picking/picker.ts", import.meta.url),
    new URL("../lib/picking/policy_holder.ts", import.meta.url),
  ];
  for await (const entry of Deno.readDir(new URL("../policies/", import.meta.url))) {
    files.push(new URL(`../policies/${entry.name}`, import.meta.url));
  }
  for (const file of files) {
    assert.doesNotMatch(await Deno.readTextFile(file), /getLogger|console\./, file.pathname);
  }
});

/** Parses every line of `log` as JSON, failing on the first line that is not. */
function jsonLines(log: string): Record<string, unknown>[] {
  return log.split("\n").filter((line) => line !== "").map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`not a JSON line: ${line}`);
    }
  });
}

Deno.test("--log-format json: every line of a balancer and a backend is a JSON object", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer(["--log-format", "json"]);
  const backend = sys.backend(["--balancer", balancer.address, "--log-format", "json"]);
  const lines = () => jsonLines(balancer.process.log());
  const about = (pattern: RegExp) =>
    lines().find((line) => pattern.test(String(line.message)) && line.address === backend.address);
  await waitFor("the backend to register", () => about(/registered$/), 20_000, 50);
  backend.process.signal("SIGKILL");
  await waitFor("the balancer to eject the backend", () => about(/ ejected: /), 20_000, 50);
  // Every line up to their exit.
  await sys.close();
  const all = [...lines(), ...jsonLines(backend.process.log())];
  for (const line of all) {
    assert.equal(typeof line["@timestamp"], "string");
    assert.match(String(line.level), /^(DEBUG|INFO|WARN|ERROR)$/);
    assert.match(String(line.logger), /^lb\./);
    assert.equal(typeof line.message, "string");
  }
  const ejected = about(/ ejected: /)!;
  assert.equal(ejected.level, "WARN");
  assert.equal(ejected.logger, "lb.health");
  assert.equal(typeof ejected.reason, "string");
  assert.ok(
    all.some((line) => line.logger === "lb.backend" && line.address === backend.address),
    "the backend names itself in its lines",
  );
});
