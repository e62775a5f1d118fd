/**
 * Works around denoland/deno#36788 (Deno 2.9.4 to 2.9.6, at least): a `node:http2` session that
 * receives a GOAWAY aborts the whole process inside nghttp2 (`find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`) or segfaults. A client receives one at every graceful
 * server stop (grpc-js's `tryShutdown` and `forceShutdown`, a Python/C-core server's
 * `stop(grace)`); a server receives one whenever a grpc-js client closes its channel.
 *
 * Deno's `onGoawayData` runs inside nghttp2's GOAWAY callback, before nghttp2 has finished with
 * the frame, and calls `session.close()` (`destroy()` for an error code) right after emitting
 * `'goaway'`; from 2.9.4 on, that teardown frees native state that nghttp2 is still walking.
 * Here a session's `close()`/`destroy()` called while its `'goaway'` is being handled runs one
 * macrotask later, once nghttp2 has unwound. `'goaway'` itself is still emitted synchronously, as
 * in Node, so grpc-js reacts as before. The patch is on `Http2Session.prototype`, so it covers
 * every session, client and server, grpc-js's and etcd3's; it changes nothing for a session that
 * never receives a GOAWAY but the timing of that one teardown. Remove it once Deno fixes the bug.
 *
 * @module
 */
import http2 from "node:http2";

type Method = (this: object, ...args: unknown[]) => unknown;
type SessionPrototype = Record<string | symbol, unknown>;

/** Sessions handling a received GOAWAY (from `'goaway'` until the next macrotask). */
const inGoaway = new WeakSet<object>();
/** Marks the prototype once patched (a module can be loaded twice, e.g. from a bundle). */
const PATCHED = Symbol.for("lb.http2GoawayFix");

const proto = (http2 as unknown as { Http2Session?: { prototype: SessionPrototype } })
  .Http2Session?.prototype;

/** Whether the workaround is in place (it needs `node:http2` to export `Http2Session`). */
export const GOAWAY_FIX_APPLIED = proto !== undefined;

if (proto && !proto[PATCHED]) {
  proto[PATCHED] = true;
  const emit = proto.emit as Method;
  proto.emit = function (this: object, event: unknown, ...rest: unknown[]) {
    if (event === "goaway" && !inGoaway.has(this)) {
      inGoaway.add(this);
      // Deno calls close()/destroy() right after this emit returns, still inside nghttp2.
      setTimeout(() => inGoaway.delete(this), 0);
    }
    return emit.call(this, event, ...rest);
  };
  for (const name of ["close", "destroy"]) {
    const original = proto[name] as Method;
    proto[name] = function (this: object, ...args: unknown[]) {
      if (!inGoaway.has(this)) return original.apply(this, args);
      setTimeout(() => original.apply(this, args), 0);
      return this;
    };
  }
}
