/**
 * The HTTP side of a process (`--http-port`): a small `Deno.serve` router for the dashboard,
 * `/metrics` and `/health`. Off unless a port is given; binds loopback by default.
 *
 * A route is a path and a handler per method; anything else answers 404 or 405 with a line of
 * text saying what exists.
 *
 * @module
 */
import { joinHostPort } from "../wire/address.ts";
import { intFlag, UsageError } from "../runtime/flags.ts";

/** Where the HTTP side binds when `--http-host` is absent: loopback only. */
export const DEFAULT_HTTP_HOST = "127.0.0.1";

/** `--http-host`, to spread into an entry's flags (its `--http-port` help is its own). */
export const HTTP_HOST_FLAG = {
  "http-host": {
    type: "string",
    arg: "HOST",
    help: "address of the HTTP side",
    default: DEFAULT_HTTP_HOST,
  },
} as const;

/**
 * Reads `--http-port` and `--http-host`: where to serve HTTP, or `undefined` (no HTTP) when no
 * port is given. A host without a port is a usage error, not silently ignored.
 */
export function httpFlags(
  program: string,
  port: string | undefined,
  host: string | undefined,
): { host: string; port: number } | undefined {
  if (port === undefined) {
    if (host !== undefined) {
      throw new UsageError(`Cannot start ${program} as '--http-host' needs '--http-port PORT'`);
    }
    return undefined;
  }
  return {
    host: host ?? DEFAULT_HTTP_HOST,
    port: intFlag(program, "http-port", port, 0, 0, 65535),
  };
}

/** Handles one request to a route. */
export type RouteHandler = (request: Request, url: URL) => Response | Promise<Response>;

/** Handlers of one path, by HTTP method (`GET`, `POST`, ...). */
export type Route = Partial<Record<string, RouteHandler>>;

/** Options of {@linkcode HttpServer}. */
export interface HttpServerOptions {
  host: string;
  /** 0 binds a free port. */
  port: number;
  /** Routes by exact path. */
  routes: Record<string, Route>;
}

/** A running HTTP server. */
export class HttpServer {
  #options: HttpServerOptions;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;
  #aborts = new AbortController();

  /** Creates the server; {@linkcode start} serves it. */
  constructor(options: HttpServerOptions) {
    this.#options = options;
  }

  /** Aborted when the server stops: long responses (event streams) end on it. */
  get stopping(): AbortSignal {
    return this.#aborts.signal;
  }

  /** Starts serving; resolves with the bound port. */
  start(): Promise<number> {
    const { host, port } = this.#options;
    return new Promise((resolve, reject) => {
      try {
        this.#server = Deno.serve({
          hostname: host,
          port,
          onListen: (addr) => resolve(addr.port),
          onError: (error) => {
            return new Response(`Internal error: ${(error as Error).message}\n`, { status: 500 });
          },
        }, (request) => this.#handle(request));
      } catch (error) {
        reject(
          new Error(
            `Cannot serve HTTP on ${joinHostPort(host, port)}: ${(error as Error).message}`,
          ),
        );
      }
    });
  }

  /** Ends open event streams, then stops serving. */
  async stop(): Promise<void> {
    this.#aborts.abort();
    await this.#server?.shutdown();
  }

  #handle(request: Request): Response | Promise<Response> {
    const url = new URL(request.url);
    const route = this.#options.routes[url.pathname];
    if (route === undefined) {
      const paths = Object.keys(this.#options.routes).join(", ");
      return new Response(`Not found: ${url.pathname.slice(0, 200)} (there are ${paths})\n`, {
        status: 404,
      });
    }
    const handler = route[request.method];
    if (handler === undefined) {
      const allow = Object.keys(route).join(", ");
      return new Response(`Method ${request.method} not allowed here (allowed: ${allow})\n`, {
        status: 405,
        headers: { allow },
      });
    }
    return handler(request, url);
  }
}

/** The `/health` route: 200 while `serving()`, else 503, with the status as text. */
export function healthRoute(serving: () => boolean): Route {
  return {
    GET: () =>
      serving() ? new Response("SERVING\n") : new Response("NOT_SERVING\n", { status: 503 }),
  };
}
