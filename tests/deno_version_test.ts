/** Entries refuse a Deno version known to crash them, with one line saying what to run. */
import assert from "node:assert/strict";
import { denoVersionProblem } from "../lib/runtime/deno_version.ts";
import { GOAWAY_FIX_APPLIED } from "../lib/runtime/http2_goaway_fix.ts";

Deno.test("denoVersionProblem() refuses 2.9.4 to 2.9.6 without the GOAWAY workaround, naming 2.9.3 and the command", () => {
  for (const version of ["2.9.4", "2.9.5", "2.9.6"]) {
    const problem = denoVersionProblem(version, "balancer", false);
    assert.match(problem!, new RegExp(`Deno ${version.replaceAll(".", "\\.")}, which aborts`));
    assert.ok(problem!.endsWith("as 'npx --yes deno@2.9.3 task balancer'"), problem!);
    assert.equal(denoVersionProblem(version, "balancer", true), undefined);
  }
  for (const version of ["2.9.3", "2.8.3", "2.9.0"]) {
    assert.equal(denoVersionProblem(version, "balancer", false), undefined);
  }
});

Deno.test("the GOAWAY workaround is in place on this Deno, so no entry is refused", () => {
  assert.equal(GOAWAY_FIX_APPLIED, true);
  assert.equal(denoVersionProblem(Deno.version.deno, "balancer"), undefined);
});
