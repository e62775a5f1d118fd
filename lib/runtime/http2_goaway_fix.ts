/**
 * Works around denoland/deno#36788: a `node:http2` session that receives a GOAWAY (a client at
 * every graceful server stop, a server whenever a grpc-js client closes its channel) can abort the
 * process inside nghttp2, because Deno tears the session down from within nghttp2's GOAWAY
 * callback. Here a `close()`/`destroy()` called while the session's `'goaway'` is handled runs
 * one macrotask later; `'goaway'` is still emitted at once, as in Node. It patches
 * `Http2Session.prototype`, so it covers every session, grpc-js's and etcd3's. Remove it once
 * Deno fixes the bug.
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
