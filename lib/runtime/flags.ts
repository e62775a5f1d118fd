/**
 * Flag parsing shared by the entry scripts: `node:util`'s `parseArgs` (JSR's `@std/cli` cannot
 * be reached from our machines), an environment variable for every flag, `--help` text made
 * from the same definitions, validators that fail with one line naming the flag (or the
 * variable it came from) and what it accepts, and {@linkcode FlagReader}, which reads a flag or
 * else the default its table shows. Each entry's table and parsing live beside what it
 * configures (`lib/balancer/balancer_flags.ts`, ...).
 *
 * Every flag `--some-flag` but `--help` may also be set with `LB_SOME_FLAG`; a flag on the
 * command line wins, and an empty variable counts as unset.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { denoVersionProblem } from "./deno_version.ts";

/** One flag of an entry: its type for `parseArgs`, and its line in `--help`. */
export interface FlagSpec {
  readonly type: "string" | "boolean";
  /** The value's placeholder in `--help` (string flags), e.g. `PORT`. */
  readonly arg?: string;
  /** What it does, for `--help`. */
  readonly help: string;
  /** The default, as `--help` shows it. */
  readonly default?: string | number;
}

/** An entry's flags by name (without `--`). */
export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

/** `--help`, which every entry has. */
export const HELP_FLAG = { help: { type: "boolean", help: "show this text" } } as const;

/** Parsed flags: a string or a boolean per flag given (on the command line or in the env). */
export type FlagValues<T extends FlagSpecs> = {
  [K in keyof T]?: T[K]["type"] extends "boolean" ? boolean : string;
};

/** Values a boolean flag accepts from its environment variable (any case). */
const ENV_TRUE = ["1", "true", "yes"];
const ENV_FALSE = ["0", "false", "no"];

/** Prefix of the environment variables of flags. */
const ENV_PREFIX = "LB_";

/**
 * The flags of this process taken from the environment, with their variable: usage errors
 * about them name the variable ({@linkcode UsageError}).
 */
const fromEnv = new Map<string, string>();

/** The environment variable of `flag`: `policy` → `LB_POLICY`, `etcd-ca` → `LB_ETCD_CA`. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replaceAll("-", "_");
}

/** The flags of `specs` that have an environment variable: all but `help`. */
export function envFlags(specs: FlagSpecs): string[] {
  return Object.keys(specs).filter((flag) => flag !== "help");
}

/**
 * Thrown for a bad flag; entries print `message` alone and exit with status 2. A flag that came
 * from the environment is named by its variable: `'--policy'` reads `'LB_POLICY' (--policy)`.
 */
export class UsageError extends Error {
  /** Creates a usage error. */
  constructor(message: string, options?: ErrorOptions) {
    let named = message;
    for (const [flag, variable] of fromEnv) {
      named = named.replaceAll(`'--${flag}'`, `'${variable}' (--${flag})`);
    }
    super(named, options);
    this.name = "UsageError";
  }
}

/** Reads environment variable `name`: `undefined` when unset, empty or not permitted. */
function readEnv(name: string): string | undefined {
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  const value = Deno.env.get(name);
  return value === "" ? undefined : value;
}

/**
 * Parses `args` strictly (unknown flags and stray positionals are usage errors), then takes
 * each flag not given from its environment variable (`env`, by default the process's).
 */
export function parseFlags<T extends FlagSpecs>(
  program: string,
  args: string[],
  specs: T,
  env: (name: string) => string | undefined = readEnv,
): FlagValues<T> {
  fromEnv.clear();
  const options = Object.fromEntries(
    Object.entries(specs).map(([flag, spec]) => [flag, { type: spec.type }]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(
      `Cannot start ${program}: ${(error as Error).message.replace(/\s*\n\s*/g, " ")}`,
      { cause: error },
    );
  }
  for (const flag of envFlags(specs)) {
    const value = values[flag] === undefined ? env(envName(flag)) : undefined;
    if (value === undefined) continue;
    fromEnv.set(flag, envName(flag));
    values[flag] = specs[flag].type === "boolean" ? envBoolean(program, flag, value) : value;
  }
  return values as FlagValues<T>;
}

/** Reads a boolean flag's environment variable. */
function envBoolean(program: string, flag: string, value: string): boolean {
  const word = value.toLowerCase();
  if (ENV_TRUE.includes(word)) return true;
  if (ENV_FALSE.includes(word)) return false;
  throw new UsageError(
    `Cannot start ${program} as '--${flag}' must be one of ${
      [...ENV_TRUE, ...ENV_FALSE].join(", ")
    }: current value is '${value}'`,
  );
}

/** The flags of `T` whose type is `type`. */
type FlagsOfType<T extends FlagSpecs, type extends FlagSpec["type"]> =
  & { [K in keyof T]: T[K]["type"] extends type ? K : never }[keyof T]
  & string;

/** `V`, or `V | undefined` when flag `K` of `T` has no default. */
type OrUndefined<T extends FlagSpecs, K extends keyof T, V> = T[K] extends
  { readonly default: string | number } ? V : V | undefined;

/**
 * Reads an entry's parsed flags against its table: a flag not given takes the table's default
 * (the one `--help` shows, so the default is written once), and a flag without one reads as
 * `undefined`. Each read checks the value and throws a {@linkcode UsageError} naming the flag.
 */
export class FlagReader<T extends FlagSpecs> {
  readonly #program: string;
  readonly #specs: T;
  readonly #values: FlagValues<T>;

  /** Reads `values`, parsed by {@linkcode parseFlags} from `specs`, for `program`. */
  constructor(program: string, specs: T, values: FlagValues<T>) {
    this.#program = program;
    this.#specs = specs;
    this.#values = values;
  }

  /** A boolean flag: `false` when absent. */
  boolean(flag: FlagsOfType<T, "boolean">): boolean {
    return this.#values[flag] === true;
  }

  /** A string flag's text, or its default as text. */
  string<K extends FlagsOfType<T, "string">>(flag: K): OrUndefined<T, K, string> {
    const value = this.#values[flag] ?? this.#specs[flag].default;
    return (value === undefined ? undefined : String(value)) as OrUndefined<T, K, string>;
  }

  /** An integer flag within `[min, max]` (see {@linkcode intFlag}). */
  int<K extends FlagsOfType<T, "string">>(
    flag: K,
    min: number,
    max: number,
  ): OrUndefined<T, K, number> {
    const value = this.string(flag) as string | undefined;
    return intFlag(this.#program, flag, value, undefined, min, max) as OrUndefined<T, K, number>;
  }

  /** A number flag within `[min, max]` (see {@linkcode numberFlag}). */
  number<K extends FlagsOfType<T, "string">>(
    flag: K,
    min: number,
    max: number,
  ): OrUndefined<T, K, number> {
    const value = this.string(flag) as string | undefined;
    return numberFlag(this.#program, flag, value, undefined, min, max) as OrUndefined<T, K, number>;
  }

  /** A flag that must be one of `choices` (see {@linkcode choiceFlag}). */
  choice<K extends FlagsOfType<T, "string">, C extends string>(
    flag: K,
    choices: readonly C[],
  ): OrUndefined<T, K, C> {
    const value = this.string(flag) as string | undefined;
    return choiceFlag(this.#program, flag, value, undefined, choices) as OrUndefined<T, K, C>;
  }
}

/** What `--help` shows besides the flags. */
export interface UsageText {
  /** The command line, e.g. `deno task balancer [flags]`. */
  command: string;
  /** One paragraph on what the entry does. */
  about: string;
  /** Example command lines. */
  examples: string[];
}

/** Column where flag descriptions start in `--help`. */
const HELP_COLUMN = 30;
/** Width `--help` wraps at. */
const HELP_WIDTH = 100;
/** Joins words that `--help` keeps on one line ("default 250"). */
const NBSP = "\u00a0";

/**
 * The `--help` text of an entry: its command, what it does, every flag with its default and
 * environment variable, and examples.
 */
export function usage(text: UsageText, specs: FlagSpecs): string {
  const lines = Object.entries(specs).map(([flag, spec]) => {
    const name = `  --${flag}${spec.arg ? ` ${spec.arg}` : ""}`;
    const notes = [
      ...(spec.default === undefined ? [] : [`default${NBSP}${spec.default}`]),
      ...(flag === "help" ? [] : [`$${envName(flag)}`]),
    ];
    const description = `${spec.help}${notes.length ? ` (${notes.join("; ")})` : ""}`;
    const wrapped = wrap(description, HELP_WIDTH - HELP_COLUMN);
    const first = name.length < HELP_COLUMN - 1
      ? `${name.padEnd(HELP_COLUMN)}${wrapped[0]}`
      : `${name}\n${" ".repeat(HELP_COLUMN)}${wrapped[0]}`;
    return [first, ...wrapped.slice(1).map((line) => " ".repeat(HELP_COLUMN) + line)].join("\n");
  });
  return [
    `Usage: ${text.command}`,
    "",
    ...wrap(text.about, HELP_WIDTH),
    "",
    `Flags (each may also be set with the environment variable shown; a flag given wins):`,
    ...lines,
    "",
    "Examples:",
    ...text.examples.map((example) => `  ${example}`),
  ].join("\n");
}

/** Splits `text` into lines of at most `width` characters, at spaces (not at {@linkcode NBSP}). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  return [...lines, line].map((l) => l.replaceAll(NBSP, " "));
}

/** Reads an integer flag within `[min, max]`, or `fallback` when absent. */
export function intFlag<F extends number | undefined>(
  program: string,
  flag: string,
  value: string | undefined,
  fallback: F,
  min: number,
  max: number,
): number | F {
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
export function numberFlag<F extends number | undefined>(
  program: string,
  flag: string,
  value: string | undefined,
  fallback: F,
  min: number,
  max: number,
): number | F {
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
export function choiceFlag<C extends string, F extends C | undefined = C>(
  program: string,
  flag: string,
  value: string | undefined,
  fallback: F,
  choices: readonly C[],
): C | F {
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

/**
 * Runs an entry's `main`, unless this Deno is one known to crash it (one line, exit status 1). A
 * {@linkcode UsageError} becomes one line and exit status 2; any other failure to start (a port
 * in use, say) one line and exit status 1.
 */
export async function runMain(main: () => Promise<void>): Promise<void> {
  const task = Deno.mainModule.replace(/^.*\/|\.[jt]s$/g, "");
  const problem = denoVersionProblem(Deno.version.deno, task);
  if (problem) {
    console.error(`error: ${problem}`);
    Deno.exit(1);
  }
  try {
    await main();
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    Deno.exit(error instanceof UsageError ? 2 : 1);
  }
}

/** Reads `--etcd url[,url]`: each an `http://` or `https://` URL with a host and port. */
export function etcdFlag(
  program: string,
  value: string | undefined,
  flag = "etcd",
): string[] | undefined {
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
      `Cannot start ${program} as '--${flag}' must be a comma-separated list of http(s)://host:port URLs: current value is '${value}'`,
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
