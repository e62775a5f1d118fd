/**
 * Works around a race in grpc-js (1.14.7) that hangs a client: when a server's GOAWAY arrives
 * together with its first SETTINGS (a server that is shutting down accepts the connection and
 * sends both at once), the new transport reports its disconnect before the subchannel has
 * subscribed to it. The subchannel then turns READY on a dead connection and stays there; every
 * call fails to start (`NOT_STARTED`) and grpc-js retries it transparently at once, in
 * microtasks: the process stops serving timers, deadlines never fire and memory grows until V8
 * gives up.
 *
 * Here a transport that has already reported its disconnect tells every listener added later,
 * at once, so the subchannel leaves READY as it would have. The patch is on the transport's
 * prototype, reached through the first connection, and covers every grpc-js channel in the
 * process (ours and etcd3's). `tests/grpc_transport_fix_test.ts` speaks to a server that sends
 * GOAWAY with its first SETTINGS. Remove it once grpc-js subscribes before it can miss the event.
 *
 * @module
 */
import { Http2SubchannelConnector } from "@grpc/grpc-js/build/src/transport.js";

type Listener = (tooManyPings: boolean) => void;
interface TransportPrototype {
  addDisconnectListener(this: { disconnectHandled?: boolean }, listener: Listener): void;
}

/** Marks the connector and transport prototypes once patched. */
const PATCHED = Symbol.for("lb.grpcTransportFix");

const connector = Http2SubchannelConnector.prototype as unknown as Record<symbol, unknown> & {
  connect(...args: unknown[]): Promise<object>;
};

if (!connector[PATCHED]) {
  connector[PATCHED] = true;
  const connect = connector.connect;
  connector.connect = function (this: unknown, ...args: unknown[]) {
    return connect.apply(this, args).then((transport) => {
      patchTransport(Object.getPrototypeOf(transport));
      return transport;
    });
  };
}

/** Makes `addDisconnectListener` call a listener added after the disconnect was reported. */
function patchTransport(proto: TransportPrototype & Record<symbol, unknown>): void {
  if (proto[PATCHED]) return;
  proto[PATCHED] = true;
  const add = proto.addDisconnectListener;
  proto.addDisconnectListener = function (listener) {
    add.call(this, listener);
    if (this.disconnectHandled === true) listener(false);
  };
}
