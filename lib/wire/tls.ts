/**
 * TLS for every gRPC server and channel: PEM files named by `--tls-cert`, `--tls-key`,
 * `--tls-ca` (and `--tls-mutual`) turned into grpc-js credentials. Without a config, servers and
 * channels are plaintext, as before.
 *
 * Two traps of grpc-js 1.14.7 on Deno 2.9.3, found by the spike behind `tests/tls_test.ts`, are
 * handled here once:
 * - A server created with no root certificates gets the whole system bundle as `ca`, and Deno's
 *   TLS then fails every handshake (clients see `HandshakePayloadTooLarge`). A server without
 *   `--tls-ca` therefore passes its own certificate as the (unused) root.
 * - grpc-js sends the target's host as the TLS server name, and Deno's `node:tls` refuses an IP
 *   address there (`options.servername must not be an IP address`), so no channel to
 *   `127.0.0.1:port` could connect. For an IP target the channel sends a placeholder name and
 *   still checks the server's certificate against the IP (its `IP:` subject alternative name).
 *
 * Every failure seen in the spike (plaintext client to a TLS server, TLS client to a plaintext
 * server, untrusted certificates either way, a missing client certificate under mutual TLS, a
 * wrong server name) reached the caller as a proper status: UNAVAILABLE with a message.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { SecureClientSessionOptions } from "node:http2";
import { isIP } from "node:net";
import { checkServerIdentity, createSecureContext, type SecureContext } from "node:tls";
import { fileFlag, UsageError } from "../runtime/flags.ts";

/** PEM text of a process's TLS material. */
export interface TlsConfig {
  /** Certificate chain presented to peers (a server's, or a client's under mutual TLS). */
  certPem?: string;
  /** Private key of `certPem`. */
  keyPem?: string;
  /** Roots trusted for the peer's certificate. @default {the system's roots, for channels} */
  caPem?: string;
  /** A server requires a client certificate signed by `caPem`. @default {false} */
  mutual?: boolean;
}

/** The TLS flags as parsed (file paths). */
export interface TlsFlags {
  "tls-cert"?: string;
  "tls-key"?: string;
  "tls-ca"?: string;
  "tls-mutual"?: boolean;
}

/**
 * SNI name sent for an IP target. RFC 6066 forbids an IP address there; our servers have one
 * certificate and ignore the name, and the certificate is checked against the IP regardless.
 */
const IP_TARGET_SERVER_NAME = "ip-address.invalid";

/**
 * Reads the TLS flags of `program`: `undefined` when none is given (plaintext). A `server`
 * (balancer, backend) needs `--tls-cert` and `--tls-key`; `--tls-mutual` needs `--tls-ca`.
 */
export function tlsFlags(
  program: string,
  flags: TlsFlags,
  role: "server" | "client",
): TlsConfig | undefined {
  const cert = flags["tls-cert"];
  const key = flags["tls-key"];
  const ca = flags["tls-ca"];
  const mutual = flags["tls-mutual"] ?? false;
  if (cert === undefined && key === undefined && ca === undefined && !mutual) return undefined;
  if ((cert === undefined) !== (key === undefined) || (role === "server" && cert === undefined)) {
    throw new UsageError(
      `Cannot start ${program} as '--tls-cert' and '--tls-key' must be given together${
        role === "server" ? " to serve TLS" : ""
      }`,
    );
  }
  if (mutual && ca === undefined) {
    throw new UsageError(
      `Cannot start ${program} as '--tls-mutual' needs '--tls-ca' to verify client certificates`,
    );
  }
  return {
    certPem: cert === undefined ? undefined : fileFlag(program, "tls-cert", cert),
    keyPem: key === undefined ? undefined : fileFlag(program, "tls-key", key),
    caPem: ca === undefined ? undefined : fileFlag(program, "tls-ca", ca),
    mutual,
  };
}

/** Server credentials: plaintext without `tls`; TLS (mutual if asked) with it. */
export function serverCredentials(tls?: TlsConfig): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (tls.certPem === undefined || tls.keyPem === undefined) {
    throw new TypeError("A TLS server needs a certificate and a key");
  }
  const cert = Buffer.from(tls.certPem);
  return grpc.ServerCredentials.createSsl(
    // Never null: see the module doc (the system bundle breaks Deno's handshake).
    Buffer.from(tls.caPem ?? tls.certPem),
    [{ cert_chain: cert, private_key: Buffer.from(tls.keyPem) }],
    tls.mutual ?? false,
  );
}

/**
 * Channel credentials: plaintext without `tls`; with it, TLS trusting `caPem` (or the system's
 * roots) and presenting `certPem`/`keyPem` when given (for mutual TLS).
 */
export function channelCredentials(tls?: TlsConfig): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return new TlsChannelCredentials(
    createSecureContext({ ca: tls.caPem, cert: tls.certPem, key: tls.keyPem }),
  );
}

/**
 * Options of a `node:http2` TLS connection to `host` (the balancer's health probes), with the
 * same IP workaround as {@linkcode channelCredentials}: for an IP the placeholder server name is
 * sent and the certificate is checked against the IP.
 */
export function http2TlsOptions(tls: TlsConfig, host: string): SecureClientSessionOptions {
  const options: SecureClientSessionOptions = { ca: tls.caPem, cert: tls.certPem, key: tls.keyPem };
  if (isIP(host) === 0) return options;
  return {
    ...options,
    servername: IP_TARGET_SERVER_NAME,
    checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
  };
}

/**
 * TLS channel credentials that also work for IP targets under Deno (see the module doc). One
 * grpc-js credentials object per IP, whose identity check names that IP. A channel given
 * `grpc.ssl_target_name_override` checks that name instead, as grpc-js does.
 */
class TlsChannelCredentials extends grpc.ChannelCredentials {
  #context: SecureContext;
  #byName: grpc.ChannelCredentials;
  #byIp = new Map<string, grpc.ChannelCredentials>();

  constructor(context: SecureContext) {
    super();
    this.#context = context;
    this.#byName = grpc.credentials.createFromSecureContext(context);
  }

  override _isSecure(): boolean {
    return true;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(
    ...[target, options, callCredentials]: Parameters<
      grpc.ChannelCredentials["_createSecureConnector"]
    >
  ): ReturnType<grpc.ChannelCredentials["_createSecureConnector"]> {
    const host = targetHost(target.path);
    // A name target, or a server name given explicitly: grpc-js's own handling is right.
    if (isIP(host) === 0 || options["grpc.ssl_target_name_override"]) {
      return this.#byName._createSecureConnector(target, options, callCredentials);
    }
    let credentials = this.#byIp.get(host);
    if (!credentials) {
      credentials = grpc.credentials.createFromSecureContext(this.#context, {
        checkServerIdentity: (_name, cert) => checkServerIdentity(host, cert),
      });
      this.#byIp.set(host, credentials);
    }
    return credentials._createSecureConnector(
      target,
      { ...options, "grpc.ssl_target_name_override": IP_TARGET_SERVER_NAME },
      callCredentials,
    );
  }
}

/** The host of a channel target's `host:port` (brackets of an IPv6 host removed). */
function targetHost(path: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(path);
  if (bracketed) return bracketed[1];
  const colon = path.lastIndexOf(":");
  return colon > 0 && path.indexOf(":") === colon ? path.slice(0, colon) : path;
}
