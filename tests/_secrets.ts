/**
 * Secret files for integration tests. Our entries may read only `./secrets` (their `deno task`
 * permissions), so a test writes its token and copies the TLS fixtures into a directory of its
 * own under `secrets/`, and removes it at the end.
 *
 * @module
 */
import { PROJECT_ROOT } from "../lib/harness/entry_process.ts";

/** TLS fixture files (`tests/fixtures/tls/`). */
export const TLS_FILES = [
  "ca.crt",
  "server.crt",
  "server.key",
  "client.crt",
  "client.key",
  "untrusted-ca.crt",
  "untrusted-client.crt",
  "untrusted-client.key",
] as const;

/** A directory under `secrets/` holding a test's files. */
export interface Secrets extends AsyncDisposable {
  /** Path of `name` as the entries see it (relative to the project root). */
  path(name: string): string;
  /** Writes `name` with `text`; resolves with its path. */
  write(name: string, text: string): Promise<string>;
}

/** Creates `secrets/test-<random>/` with the TLS fixtures copied in. */
export async function testSecrets(): Promise<Secrets> {
  const dir = `secrets/test-${crypto.randomUUID()}`;
  const abs = (name: string) => new URL(`${dir}/${name}`, PROJECT_ROOT);
  await Deno.mkdir(new URL(`${dir}/`, PROJECT_ROOT), { recursive: true });
  await Promise.all(
    TLS_FILES.map((file) =>
      Deno.copyFile(new URL(`fixtures/tls/${file}`, import.meta.url), abs(file))
    ),
  );
  return {
    path: (name) => `${dir}/${name}`,
    async write(name, text) {
      await Deno.writeTextFile(abs(name), text);
      return `${dir}/${name}`;
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(new URL(`${dir}/`, PROJECT_ROOT), { recursive: true });
    },
  };
}
