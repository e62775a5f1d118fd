/**
 * Helpers for answering calls with a gRPC status and a clear message.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";

/** A gRPC error as grpc-js handlers pass it to their callback. */
export interface StatusError extends Partial<grpc.StatusObject> {
  code: grpc.status;
  details: string;
}

/** Builds the error a unary handler passes to its callback. */
export function statusError(code: grpc.status, details: string): StatusError {
  return { code, details, metadata: new grpc.Metadata() };
}

/** The name of a status code (`UNAVAILABLE`), for messages and summaries. */
export function statusName(code: number | undefined): string {
  return code === undefined ? "UNKNOWN" : (grpc.status[code] ?? `CODE_${code}`);
}
