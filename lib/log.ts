/**
 * Logging set-up: one LogTape logger per module, under the `lb` category, written to stderr
 * (stdout is kept for results, such as the client's `--json` summary).
 *
 * Entries call {@linkcode setupLogging} once; modules call `getLogger(["lb", "<module>"])`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  configure,
  getLogger,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";

/** Levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warning", "error"];

/**
 * Renders a logged value: strings bare, errors as their message on one line (a log line stays a
 * line; the stack of a network error says nothing to an operator), anything else inspected.
 */
export function renderValue(value: unknown, inspect: (value: unknown) => string): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) {
    const cause = value.cause instanceof Error ? ` (cause: ${value.cause.message})` : "";
    return `${value.message}${cause}`.replace(/\s*\n\s*/g, " ");
  }
  return inspect(value);
}

/** Configures LogTape for an entry script: `level` and above go to stderr as text lines. */
export async function setupLogging(level: LogLevel): Promise<void> {
  const format = getTextFormatter({ timestamp: "time", value: renderValue });
  const encoder = new TextEncoder();
  const stderr = (record: LogRecord) => {
    Deno.stderr.writeSync(encoder.encode(format(record)));
  };
  await configure({
    reset: true,
    sinks: { stderr },
    loggers: [
      { category: ["lb"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
  // grpc-js writes its own lines to stderr (e.g. "No address added" before our own error for a
  // port in use); they go to our log at debug level instead, since every failure that matters
  // reaches the caller as a status or an error we log ourselves.
  const grpcLog = getLogger(["lb", "grpc-js"]);
  const toDebug = (...args: unknown[]) => grpcLog.debug(args.map(String).join(" "));
  grpc.setLogger({ error: toDebug, info: toDebug, debug: toDebug });
}
