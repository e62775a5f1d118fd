/**
 * The flags that secure the connection to etcd, shared by the balancer, the backend and the
 * client (for `--balancers-etcd`):
 * `--etcd-ca`, `--etcd-cert`, `--etcd-key` (TLS, files) and `--etcd-user`,
 * `--etcd-password-file` (etcd's auth). Their definitions, help and parsing live here once.
 * This module does not load the etcd3 package.
 *
 * @module
 */
import type { EtcdSecurity } from "./etcd_client.ts";
import { fileFlag, UsageError } from "../runtime/flags.ts";

/** The etcd security flags (definitions and help), to spread into an entry's own. */
export const ETCD_SECURITY_FLAGS = {
  "etcd-ca": {
    type: "string",
    arg: "PATH",
    help: "CA of etcd's certificate, for https:// (default: the system's roots)",
  },
  "etcd-cert": {
    type: "string",
    arg: "PATH",
    help: "client certificate, for an etcd with --client-cert-auth",
  },
  "etcd-key": { type: "string", arg: "PATH", help: "private key of --etcd-cert" },
  "etcd-user": { type: "string", arg: "NAME", help: "etcd user, for an etcd with auth enabled" },
  "etcd-password-file": {
    type: "string",
    arg: "PATH",
    help: "file holding that user's password (keep it under ./secrets)",
  },
} as const;

/** The etcd security flags as parsed (file paths and a username). */
export type EtcdSecurityFlags = {
  [flag in keyof typeof ETCD_SECURITY_FLAGS]?: string;
};

/**
 * Reads the etcd security flags of `program` for `endpoints` (from `--<endpointsFlag>`):
 * `undefined` when none is given. Each mistake is one line naming the flag: a flag without
 * `--<endpointsFlag>`, TLS files with `http://` endpoints, a certificate without its key, a user
 * without a password (or the reverse), an empty password, a file that cannot be read.
 */
export function etcdSecurityFlags(
  program: string,
  flags: EtcdSecurityFlags,
  endpoints: string[] | undefined,
  endpointsFlag = "etcd",
): EtcdSecurity | undefined {
  const given = (Object.keys(ETCD_SECURITY_FLAGS) as (keyof EtcdSecurityFlags)[])
    .filter((flag) => flags[flag] !== undefined);
  if (given.length === 0) return undefined;
  const fail = (why: string) => {
    throw new UsageError(`Cannot start ${program} as ${why}`);
  };
  if (endpoints === undefined) fail(`'--${given[0]}' needs '--${endpointsFlag} URL'`);
  together(flags, "etcd-cert", "etcd-key", fail);
  together(flags, "etcd-user", "etcd-password-file", fail);
  const tlsFlag = given.find((flag) => flag === "etcd-ca" || flag === "etcd-cert");
  const plain = endpoints!.find((url) => !url.startsWith("https://"));
  if (tlsFlag && plain) {
    fail(
      `'--${tlsFlag}' needs https:// endpoints in '--${endpointsFlag}': current value is '${plain}'`,
    );
  }
  const read = (flag: keyof EtcdSecurityFlags) => {
    const path = flags[flag];
    return path === undefined ? undefined : fileFlag(program, flag, path);
  };
  const password = read("etcd-password-file")?.trim();
  if (password === "") fail(`the file of '--etcd-password-file' is empty`);
  if (flags["etcd-user"] === "") fail(`'--etcd-user' must not be empty`);
  return {
    tls: tlsFlag
      ? { caPem: read("etcd-ca"), certPem: read("etcd-cert"), keyPem: read("etcd-key") }
      : undefined,
    auth: password === undefined ? undefined : { username: flags["etcd-user"]!, password },
  };
}

/** Fails unless `a` and `b` are both given or both absent. */
function together(
  flags: EtcdSecurityFlags,
  a: keyof EtcdSecurityFlags,
  b: keyof EtcdSecurityFlags,
  fail: (why: string) => never,
): void {
  if ((flags[a] === undefined) !== (flags[b] === undefined)) {
    fail(`'--${a}' and '--${b}' go together: only '--${flags[a] === undefined ? b : a}' was given`);
  }
}
