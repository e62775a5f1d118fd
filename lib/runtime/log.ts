/**
 * Logging set-up: one LogTape logger per module, under the `lb` category, written to stderr
 * (stdout is kept for results, such as the client's `--json` summary), as text lines for people
 * or, with `--log-format json`, as JSON Lines for log pipelines: one object a line with
 * `@timestamp`, `level`, `logger` (the category, `lb.balancer`), `message` and every property
 * of the record as a field of its own (`address`, `policy`, ...), so lines can be filtered by
 * server.
 *
 * Entries call {@linkcode setupLogging} once; modules call `getLogger(["lb", "<module>"])`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import {
  configure,
  getJsonLinesFormatter,
  getLogger,
  getTextFormatter,
  type LogLevel,
  type LogRecord,
  type TextFormatter,
} from "@logtape/logtape";

/** Levels accepted by `--log-level`. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warning", "error"];

/** Formats accepted by `--log-format`. */
export const LOG_FORMATS = ["text", "json"] as const;

/** A log format: `text` for people, `json` (JSON Lines) for machines. */
export type LogFormat = typeof LOG_FORMATS[number];

/** The format when `--log-format` is absent. */
export const DEFAULT_LOG_FORMAT: LogFormat = "text";

/** `--log-level` and `--log-format`, with the entry's default level, to spread into its flags. */
export function logFlags(level: LogLevel) {
  return {
    "log-level": { type: "string", arg: "LEVEL", help: LOG_LEVELS.join(" | "), default: level },
    "log-format": {
      type: "string",
      arg: "FORMAT",
      help: `${LOG_FORMATS.join(" | ")}: text lines, or JSON Lines with every property a field`,
      default: DEFAULT_LOG_FORMAT,
    },
  } as const;
}

/** `--log-level` and `--log-format` as read. */
export interface LogConfig {
  level: LogLevel;
  format: LogFormat;
}

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

/**
 * The JSON Lines formatter: LogTape's, with the record's properties as fields and values
 * rendered as by {@linkcode renderValue} (an error is its message, in the text and in its field).
 */
export function jsonFormatter(): TextFormatter {
  const json = getJsonLinesFormatter({ properties: "flatten" });
  const inspect = (value: unknown) => Deno.inspect(value, { breakLength: Infinity });
  const field = (value: unknown) => value instanceof Error ? renderValue(value, inspect) : value;
  return (record) => {
    const text = record.message.map((part, i) => i % 2 ? renderValue(part, inspect) : part);
    const properties = Object.entries(record.properties).map(([key, value]) => [key, field(value)]);
    return json({
      ...record,
      message: [text.join("")],
      properties: Object.fromEntries(properties),
    });
  };
}

/**
 * Configures LogTape for an entry script: `level` and above go to stderr, as text lines or as
 * JSON Lines.
 */
export async function setupLogging(level: LogLevel, format: LogFormat = "text"): Promise<void> {
  const formatter = format === "json"
    ? jsonFormatter()
    : getTextFormatter({ timestamp: "time", value: renderValue });
  const encoder = new TextEncoder();
  const stderr = (record: LogRecord) => {
    Deno.stderr.writeSync(encoder.encode(formatter(record)));
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
