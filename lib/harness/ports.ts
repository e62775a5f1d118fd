/**
 * Free local ports for the demo, the benchmark and tests. A port handed out here is bound later
 * by another process, so it comes from below the kernel's ephemeral range, where outgoing
 * connections never take one, chosen at random and checked free.
 *
 * @module
 */

/** Ports handed out: [FIRST_PORT, FIRST_PORT + PORT_SPAN), below Linux's ephemeral range. */
const FIRST_PORT = 20_000;
const PORT_SPAN = 12_768;
/** Random tries before falling back to a kernel-chosen (ephemeral) port. */
const TRIES = 100;

/** Returns a TCP port that was free on 127.0.0.1 a moment ago, outside the ephemeral range. */
export function freePort(): number {
  for (let i = 0; i < TRIES; i++) {
    const port = FIRST_PORT + Math.floor(Math.random() * PORT_SPAN);
    if (isFree(port)) return port;
  }
  return listenAndClose(0);
}

function isFree(port: number): boolean {
  try {
    listenAndClose(port);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return false;
    throw error;
  }
}

/** Binds `port` (0: any) on 127.0.0.1, closes it, and returns the port bound. */
function listenAndClose(port: number): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  const bound = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return bound;
}
