/** deno.json and the code that starts entries must agree on permissions and pins. */
import assert from "node:assert/strict";
import { ENTRY_PERMISSIONS } from "../lib/entry_process.ts";

const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));

for (const [entry, flags] of Object.entries(ENTRY_PERMISSIONS)) {
  Deno.test(`deno.json task '${entry}' runs ${entry}.ts with the permissions spawnEntry uses`, () => {
    assert.equal(config.tasks[entry], `deno run ${flags.join(" ")} ${entry}.ts`);
  });
}

Deno.test("deno.json pins every npm dependency to an exact version", () => {
  for (const [name, specifier] of Object.entries(config.imports as Record<string, string>)) {
    assert.match(specifier, /^npm:(@[^/]+\/)?[^@]+@\d+\.\d+\.\d+$/, name);
  }
});

Deno.test("no task runs with -A or --allow-all", () => {
  for (const [name, command] of Object.entries(config.tasks as Record<string, string>)) {
    assert.doesNotMatch(command, /(^|\s)(-A|--allow-all)(\s|$)/, name);
  }
});
