/**
 * The entries' command lines: `--help` lists every flag each entry parses with its environment
 * variable (the list comes from the same tables the entries parse, so it cannot drift), the flag
 * reference in docs/flags.md is what the entries print, an `LB_*` variable stands in for an
 * absent flag, and a flag given wins.
 */
import assert from "node:assert/strict";
import { ENTRY_FLAGS, spawnEntry } from "../lib/harness/entry_process.ts";
import { envFlags, envName, FlagReader, parseFlags, UsageError } from "../lib/runtime/flags.ts";
import { entryHelps, FLAG_DOCS, FLAG_DOCS_TASK, flagDocs } from "./_flag_docs.ts";
import { startSystem } from "./_harness.ts";
import { listServers } from "./_system.ts";

for (const [entry, specs] of Object.entries(ENTRY_FLAGS)) {
  Deno.test(`${entry} --help lists every flag with its default and variable, and examples`, async () => {
    const child = spawnEntry(entry as keyof typeof ENTRY_FLAGS, ["--help"], {
      captureStdout: true,
    });
    assert.equal((await child.status).code, 0, child.log());
    const help = child.stdout();
    for (const [flag, spec] of Object.entries(specs)) {
      assert.match(help, new RegExp(`^  --${flag}\\b`, "m"), `--${flag} missing`);
      if (flag !== "help") assert.ok(help.includes(`$${envName(flag)}`), `${envName(flag)}`);
      if ("default" in spec) assert.ok(help.includes(`default ${spec.default}`), flag);
    }
    assert.match(help, new RegExp(`^Examples:\\n  (\\S+=\\S+ )*deno task ${entry}`, "m"));
  });
}

Deno.test("docs/flags.md is every entry's --help, as the entry prints it", async () => {
  const expected = flagDocs(await entryHelps());
  const actual = await Deno.readTextFile(FLAG_DOCS).catch(() => "");
  const [want, got] = [expected.split("\n"), actual.split("\n")];
  const first = Array.from({ length: Math.max(want.length, got.length) })
    .findIndex((_, i) => want[i] !== got[i]);
  assert.ok(
    actual === expected,
    `docs/flags.md differs from what the entries print (from line ${first + 1}: ` +
      `${JSON.stringify(got[first] ?? "")}): run \`${FLAG_DOCS_TASK}\``,
  );
});

const SPECS = {
  policy: { type: "string", help: "" },
  "tls-mutual": { type: "boolean", help: "" },
  help: { type: "boolean", help: "" },
} as const;

Deno.test("envName() is LB_ and the flag in upper snake case", () => {
  assert.equal(envName("policy"), "LB_POLICY");
  assert.equal(envName("etcd-password-file"), "LB_ETCD_PASSWORD_FILE");
  assert.deepEqual(envFlags(SPECS), ["policy", "tls-mutual"]);
});

Deno.test("parseFlags() takes absent flags from the env, and a flag given wins", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.deepEqual(
    { ...parseFlags("t", [], SPECS, env({ LB_POLICY: "least_load", LB_TLS_MUTUAL: "Yes" })) },
    { policy: "least_load", "tls-mutual": true },
  );
  assert.deepEqual(
    { ...parseFlags("t", ["--policy", "pick_first"], SPECS, env({ LB_POLICY: "rr" })) },
    { policy: "pick_first" },
  );
  assert.deepEqual({ ...parseFlags("t", [], SPECS, env({ LB_TLS_MUTUAL: "0" })) }, {
    "tls-mutual": false,
  });
  assert.deepEqual({ ...parseFlags("t", [], SPECS, env({ LB_HELP: "1" })) }, {});
  assert.throws(
    () => parseFlags("t", [], SPECS, env({ LB_TLS_MUTUAL: "maybe" })),
    (error) =>
      error instanceof UsageError &&
      error.message ===
        "Cannot start t as 'LB_TLS_MUTUAL' (--tls-mutual) must be one of 1, true, yes, 0, false, no: current value is 'maybe'",
  );
});

Deno.test("FlagReader reads a flag given, else its table's default, else undefined", () => {
  const specs = {
    port: { type: "string", help: "", default: 50051 },
    duration: { type: "string", help: "" },
    json: { type: "boolean", help: "" },
  } as const;
  const read = (args: string[]) =>
    new FlagReader("t", specs, parseFlags("t", args, specs, () => undefined));
  assert.equal(read([]).int("port", 0, 65535), 50051);
  assert.equal(read(["--port", "7"]).int("port", 0, 65535), 7);
  assert.equal(read([]).number("duration", 0, 10), undefined);
  assert.equal(read(["--duration", "2.5"]).number("duration", 0, 10), 2.5);
  assert.equal(read([]).boolean("json"), false);
  assert.equal(read(["--json"]).boolean("json"), true);
  assert.throws(
    () => read(["--port", "x"]).int("port", 0, 65535),
    (error) =>
      error instanceof UsageError &&
      error.message ===
        "Cannot start t as '--port' must be an integer from 0 to 65535: current value is 'x'",
  );
});

/** Starts a balancer with `args` and `env`, and resolves with the policy it lists. */
async function policyOf(args: string[], env: Record<string, string>): Promise<string> {
  await using sys = await startSystem();
  const balancer = await sys.balancer(args, { env });
  return (await listServers(sys.lbClient(balancer.address))).policy;
}

Deno.test("a balancer takes LB_POLICY when --policy is absent; --policy wins", async () => {
  const env = { LB_POLICY: "least_load" };
  const [fromEnv, fromFlag] = await Promise.all([
    policyOf([], env),
    policyOf(["--policy", "pick_first"], env),
  ]);
  assert.equal(fromEnv, "least_load");
  assert.equal(fromFlag, "pick_first");
});
