/** Log rendering: every log line stays one line. */
import assert from "node:assert/strict";
import { renderValue } from "../lib/log.ts";

Deno.test("errors are logged as their message (and cause) on one line, without a stack", () => {
  const inspect = (v: unknown) => Deno.inspect(v);
  const error = new Error("connect failed\n    at somewhere", { cause: new Error("ECONNREFUSED") });
  assert.equal(renderValue(error, inspect), "connect failed at somewhere (cause: ECONNREFUSED)");
  assert.equal(renderValue("bare text", inspect), "bare text");
  assert.equal(renderValue({ a: 1 }, inspect), "{ a: 1 }");
});
