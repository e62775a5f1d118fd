/**
 * Flag parsing shared by the entry scripts: `node:util`'s `parseArgs` (JSR's `@std/cli` cannot
 * be reached from our machines) plus validators that fail with one line naming the flag and
 * what it accepts.
 *
 * @module
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { parseAddress } from "./address.ts";

/** Thrown for a bad flag; entries print `message` alone and exit with status 2. */
export class UsageError extends Error {
  /** Creates a usage error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UsageError";
  }
}

/** Parses `args` strictly: unknown flags and stray positionals are usage errors. */
export function parseFlags<T extends NonNullable<ParseArgsConfig["options"]>>(
  program: string,
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(
      `Cannot start ${program}: ${(error as Error).message.replace(/\s*\n\s*/g, " ")}`,
      {
        cause: error,
      },
    );
  }
}

/** Reads an integer flag within `[min, max]`, or `fallback` when absent. */
export function intFlag(
  program: string,
  flag: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(
      `Cannot start ${program} as '--${flag}' must be an integer from ${min} to ${max}: current value is '${value}'`,
    );
  }
  return n;
}

/** Reads a number flag within `[min, max]`, or `fallback` when absent. */
export function numberFlag(
  program: string,
  flag: string,
  value: string | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(
      `Cannot start ${program} as '--${flag}' must be a number from ${min} to ${max}: current value is '${value}'`,
    );
  }
  return n;
}

/** Reads a flag that must be one of `choices`, or `fallback` when absent. */
export function choiceFlag<C extends string>(
  program: string,
  flag: string,
  value: string | undefined,
  fallback: C,
  choices: readonly C[],
): C {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(
      `Cannot start ${program} as '--${flag}' must be one of ${
        choices.join(", ")
      }: current value is '${value}'`,
    );
  }
  return value as C;
}

/** Reads a `host:port` flag, or `fallback` when absent. */
export function addressFlag(
  program: string,
  flag: string,
  value: string | undefined,
  fallback?: string,
): string | undefined {
  if (value === undefined) return fallback;
  const parsed = parseAddress(value);
  if (!parsed.ok) {
    throw new UsageError(
      `Cannot start ${program} as '--${flag}' must be host:port with a port from 1 to 65535: current value is '${value}' (${parsed.reason})`,
    );
  }
  return parsed.address;
}

/**
 * Runs an entry's `main`. A {@linkcode UsageError} becomes one line and exit status 2; any other
 * failure to start (a port in use, say) one line and exit status 1.
 */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(error instanceof UsageError ? 2 : 1);
  }
}

/** Reads `--etcd url[,url]`: each an `http://` or `https://` URL with a host and port. */
export function etcdFlag(program: string, value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const urls = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  const bad = urls.find((url) => {
    try {
      const u = new URL(url);
      return !(u.protocol === "http:" || u.protocol === "https:") || u.hostname === "";
    } catch {
      return true;
    }
  });
  if (urls.length === 0 || bad !== undefined) {
    throw new UsageError(
      `Cannot start ${program} as '--etcd' must be a comma-separated list of http(s)://host:port URLs: current value is '${value}'`,
    );
  }
  return urls;
}

/**
 * Reads the text of the file a flag names (a token, a certificate). The `deno task`s may read
 * only `./secrets` (and `node_modules`): a file elsewhere is refused by Deno, which this turns
 * into one line saying what to do.
 */
export function fileFlag(program: string, flag: string, path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    const why = error instanceof Deno.errors.NotCapable
      ? "is outside what this task may read: put it under ./secrets, or run `deno run` with a wider --allow-read"
      : error instanceof Deno.errors.NotFound
      ? "does not exist"
      : `cannot be read (${(error as Error).message})`;
    throw new UsageError(`Cannot start ${program} as the file of '--${flag}' ${why}: '${path}'`, {
      cause: error,
    });
  }
}

/** Stops `stop` on the first SIGINT or SIGTERM, then exits with status 0. */
export function onShutdownSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    stop().finally(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", handler);
  Deno.addSignalListener("SIGTERM", handler);
}
