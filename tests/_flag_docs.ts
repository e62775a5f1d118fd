/**
 * `docs/flags.md`, the flag reference: every entry's `--help`, as the entry prints it. Run as a
 * script (`deno task docs:flags`) it writes the file; `tests/help_test.ts` fails when the file
 * differs from what the entries print, so the reference cannot drift from the flag tables.
 *
 * @module
 */
import { ENTRY_FLAGS, type EntryName, spawnEntry } from "../lib/harness/entry_process.ts";

/** Where the flag reference lives. */
export const FLAG_DOCS = new URL("../docs/flags.md", import.meta.url);

/** The command that writes {@linkcode FLAG_DOCS} again. */
export const FLAG_DOCS_TASK = "deno task docs:flags";

/** The entries, in the order of the reference. */
export const ENTRIES = Object.keys(ENTRY_FLAGS) as EntryName[];

/** What `<entry> --help` prints on stdout, run as its task runs it (with no `LB_*` variable). */
export async function helpOf(entry: EntryName): Promise<string> {
  const child = spawnEntry(entry, ["--help"], { captureStdout: true });
  const status = await child.status;
  if (status.code !== 0) {
    throw new Error(`${entry} --help exited with status ${status.code}:\n${child.log()}`);
  }
  return child.stdout();
}

/** The text of {@linkcode FLAG_DOCS} for each entry's `--help` output. */
export function flagDocs(helps: Record<EntryName, string>): string {
  return [
    "# Flags",
    "",
    "Every entry's `--help`, as it prints it. A flag may also be set with the environment variable shown",
    "beside it; a flag given on the command line wins.",
    "",
    "This file is generated: change the flag tables (`lib/balancer/balancer_flags.ts`,",
    "`lib/backend/backend_flags.ts`, `lib/client/client_flags.ts`, `lib/harness/demo_flags.ts`,",
    `\`lib/bench/bench_flags.ts\`, \`lib/sim/sim_flags.ts\`), then run \`${FLAG_DOCS_TASK}\`.`,
    "`tests/help_test.ts` fails while it differs from what the entries print.",
    "",
    ...ENTRIES.flatMap((entry) => [
      `## ${entry}`,
      "",
      "```text",
      helps[entry].trimEnd(),
      "```",
      "",
    ]),
  ].join("\n");
}

/** Each entry's `--help`, the entries run in parallel. */
export async function entryHelps(): Promise<Record<EntryName, string>> {
  const helps = await Promise.all(ENTRIES.map(helpOf));
  return Object.fromEntries(ENTRIES.map((entry, i) => [entry, helps[i]])) as Record<
    EntryName,
    string
  >;
}

if (import.meta.main) {
  await Deno.writeTextFile(FLAG_DOCS, flagDocs(await entryHelps()));
  console.log(`Wrote ${FLAG_DOCS.pathname}`);
}
