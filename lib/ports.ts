/**
 * Free local ports, for the demo, the benchmark and tests (which never assume a fixed port).
 *
 * @module
 */

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
