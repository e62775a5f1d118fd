/**
 * Test harness for integration tests against a real etcd: the throwaway etcd of
 * `lib/harness/etcd_process.ts`, and a TCP proxy that cuts one client off while etcd stays up.
 *
 * @module
 */
export {
  type EtcdCluster,
  type EtcdProcess,
  startEtcd,
  startEtcdCluster,
  type StartEtcdOptions,
} from "../lib/harness/etcd_process.ts";
export { freePort } from "../lib/harness/ports.ts";
export { waitFor } from "../lib/harness/wait.ts";

/** A TCP proxy in front of etcd, so a test can cut one client off while etcd stays up. */
export interface TcpProxy {
  /** URL to give the client, `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** Closes every proxied connection and refuses new ones (accepts and closes at once). */
  cut(): void;
  /** Lets new connections through again. */
  restore(): void;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** Starts a TCP proxy on a free port of 127.0.0.1 that forwards to `target` (`http://host:port`). */
export function startTcpProxy(target: string): TcpProxy {
  const url = new URL(target);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const endpoint = `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
  const open = new Set<Deno.Conn>();
  const pipes = new Set<Promise<void>>();
  let isCut = false;

  const closeQuietly = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  };

  const forward = async (inbound: Deno.Conn) => {
    let outbound: Deno.Conn;
    try {
      outbound = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
    } catch {
      closeQuietly(inbound);
      return;
    }
    if (isCut || !open.has(inbound)) {
      closeQuietly(inbound);
      outbound.close();
      return;
    }
    open.add(outbound);
    await Promise.allSettled([copy(inbound, outbound), copy(outbound, inbound)]);
    closeQuietly(inbound);
    closeQuietly(outbound);
  };

  const copy = async (from: Deno.Conn, to: Deno.Conn) => {
    const buffer = new Uint8Array(16 * 1024);
    try {
      while (true) {
        const n = await from.read(buffer);
        if (n === null) break;
        let written = 0;
        while (written < n) written += await to.write(buffer.subarray(written, n));
      }
    } finally {
      // Either side ending ends the pair, like a cut cable.
      closeQuietly(from);
      closeQuietly(to);
    }
  };

  const accepting = (async () => {
    for await (const inbound of listener) {
      if (isCut) {
        inbound.close();
        continue;
      }
      open.add(inbound);
      const pipe = forward(inbound).catch(() => {});
      pipes.add(pipe);
      pipe.finally(() => pipes.delete(pipe));
    }
  })().catch(() => {});

  const closeAll = () => {
    for (const conn of [...open]) closeQuietly(conn);
  };

  return {
    endpoint,
    cut: () => {
      isCut = true;
      closeAll();
    },
    restore: () => {
      isCut = false;
    },
    close: async () => {
      isCut = true;
      listener.close();
      closeAll();
      await accepting;
      await Promise.allSettled([...pipes]);
    },
  };
}
