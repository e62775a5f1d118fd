/**
 * Logging set-up: one LogTape logger per module, under the `lb` category, written to stderr
 * (stdout is kept for results, such as the client's `--json` summary).
 *
 * Entries call {@linkcode setupLogging} once; modules call `getLogger(["lb", "<module>"])`.
 *
 * @module
 */
import { configure, getTextFormatter, type LogLevel, type LogRecord } from "@logtape/logtape";

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
}
