/**
 * The shared control-plane token (`--token-file`): read once at start, sent by our backends and
 * clients as `authorization: Bearer <token>` on every call to the balancer, and checked by the
 * balancer's protected handlers. Without a token file, nothing is sent and nothing is checked.
 *
 * The token goes to the balancer only, never to backends: a backend is any address the balancer
 * names, and must not collect the key to the control plane.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { createHash, timingSafeEqual } from "node:crypto";
import { fileFlag, UsageError } from "../runtime/flags.ts";
import { type StatusError, statusError } from "./status.ts";

/** Metadata key carrying the token. */
export const AUTHORIZATION_KEY = "authorization";

/** Reads `--token-file`: its text, trimmed, which must not be empty. */
export function tokenFlag(program: string, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  const token = fileFlag(program, "token-file", path).trim();
  if (token === "" || /[\r\n]/.test(token)) {
    throw new UsageError(
      `Cannot start ${program} as the file of '--token-file' must hold one non-empty line: '${path}'`,
    );
  }
  return token;
}

/**
 * A client interceptor adding the token to every call of a channel (unary and streaming alike),
 * so no call site can forget it.
 */
export function tokenInterceptor(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTHORIZATION_KEY, `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** `options` with the token interceptor added, or as they are without a token. */
export function withToken(
  options: grpc.ClientOptions,
  token: string | undefined,
): grpc.ClientOptions {
  if (token === undefined) return options;
  return { ...options, interceptors: [...(options.interceptors ?? []), tokenInterceptor(token)] };
}

/**
 * Checks a call's metadata against `token`: `undefined` when it carries it, else the
 * UNAUTHENTICATED status to answer with. The comparison takes the same time wherever the
 * tokens differ (digests of equal length, compared in constant time).
 */
export function checkToken(metadata: grpc.Metadata, token: string): StatusError | undefined {
  const values = metadata.get(AUTHORIZATION_KEY);
  if (values.length === 0) {
    return statusError(
      grpc.status.UNAUTHENTICATED,
      "This call needs the control-plane token: send 'authorization: Bearer <token>' (--token-file)",
    );
  }
  const match = /^Bearer (.+)$/i.exec(String(values[0]));
  if (values.length > 1 || !match || !sameSecret(match[1], token)) {
    return statusError(grpc.status.UNAUTHENTICATED, "The control-plane token is wrong");
  }
  return undefined;
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
