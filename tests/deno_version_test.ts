/** Entries refuse the Deno versions known to crash them, with one line saying what to run. */
import assert from "node:assert/strict";
import { denoVersionProblem, PINNED_DENO_VERSION } from "../lib/deno_version.ts";
import { PROJECT_ROOT } from "../lib/entry_process.ts";

Deno.test("denoVersionProblem() names the version to use and the command for 2.9.4 to 2.9.6", () => {
  for (const version of ["2.9.4", "2.9.5", "2.9.6"]) {
    const problem = denoVersionProblem(version, "balancer");
    assert.match(problem!, new RegExp(`Deno ${version.replaceAll(".", "\\.")}, which aborts`));
    assert.ok(problem!.endsWith(`'npx --yes deno@${PINNED_DENO_VERSION} task balancer'`), problem!);
  }
  for (const version of [PINNED_DENO_VERSION, "2.8.3", "2.9.0"]) {
    assert.equal(denoVersionProblem(version, "balancer"), undefined);
  }
});

Deno.test("an entry started on Deno 2.9.6 stops with one line naming the version to use", async () => {
  // The real Deno 2.9.6, from the npm registry as the README's commands get theirs.
  const out = await new Deno.Command("npx", {
    args: ["--yes", "deno@2.9.6", "run", "--allow-all", "client.ts", "--list"],
    cwd: PROJECT_ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr).trim();
  assert.equal(out.code, 1, stderr);
  assert.equal(
    stderr.split("\n").at(-1),
    `error: ${denoVersionProblem("2.9.6", "client")}`,
  );
});
