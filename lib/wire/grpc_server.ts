/**
 * Binding and stopping grpc-js servers, as promises.
 *
 * @module
 */
import "../runtime/http2_goaway_fix.ts";
import * as grpc from "@grpc/grpc-js";
import { joinHostPort } from "./address.ts";
import { intFlag } from "../runtime/flags.ts";
import http2 from "node:http2";
import { serverCredentials, type TlsConfig } from "./tls.ts";

/** Default bound on the messages a server accepts: small, since no RPC here carries much. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;

/** Smallest and largest values of `--max-message-bytes`. */
const MAX_MESSAGE_RANGE = [1_024, 64 * 1024 * 1024] as const;

/** `--max-message-bytes`, to spread into a server entry's flags. */
export const MAX_MESSAGE_FLAG = {
  "max-message-bytes": {
    type: "string",
    arg: "N",
    help: "largest request accepted; larger ones answer RESOURCE_EXHAUSTED",
    default: DEFAULT_MAX_MESSAGE_BYTES,
  },
} as const;

/** Reads `--max-message-bytes` (bytes, 1 KiB to 64 MiB), or the default when absent. */
export function maxMessageFlag(program: string, value: string | undefined): number {
  return intFlag(
    program,
    "max-message-bytes",
    value,
    DEFAULT_MAX_MESSAGE_BYTES,
    ...MAX_MESSAGE_RANGE,
  );
}

/** Creates a grpc-js server with our limits. */
export function createServer(maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES): grpc.Server {
  // Deno's node:http2 lacks this constant, so grpc-js answered a request whose content-type is
  // not application/grpc with HTTP 200 and no grpc-status instead of 415 Unsupported Media Type.
  (http2.constants as { HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE?: number })
    .HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE ??= 415;
  return new grpc.Server({
    "grpc.max_receive_message_length": maxMessageBytes,
  });
}

/**
 * Binds `server` to `host:port`, with TLS when `tls` is given; resolves with the port (useful
 * with port 0).
 */
export function bindServer(
  server: grpc.Server,
  host: string,
  port: number,
  tls?: TlsConfig,
): Promise<number> {
  const target = joinHostPort(host, port);
  return new Promise((resolve, reject) => {
    server.bindAsync(target, serverCredentials(tls), (error, bound) => {
      if (error) {
        reject(new Error(`Cannot listen on ${target}: ${error.message}`, { cause: error }));
      } else resolve(bound);
    });
  });
}

/**
 * Stops accepting new calls and waits for in-flight ones to finish, for at most `graceMs`;
 * then cancels what is left.
 */
export function shutdownServer(server: grpc.Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
