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

/** Configures LogTape for an entry script: `level` and above go to stderr as text lines. */
export async function setupLogging(level: LogLevel): Promise<void> {
  const format = getTextFormatter({ timestamp: "time", value: "bare" });
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
