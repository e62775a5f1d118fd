/**
 * The balancer's live dashboard on its HTTP side: a page showing the policy and each server's
 * health, load, report age, weight and share of picks, fed by server-sent events (`/events`), with
 * a form that changes the policy (`POST /policy`). Shares come from the picker's cumulative counts
 * on the slow path, so the pick path does no more work; the page and uPlot are imported as text,
 * so the balancer serves them itself and `deno bundle` embeds them.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import uplotCss from "uplot/dist/uPlot.min.css" with { type: "text" };
import uplotJs from "uplot/dist/uPlot.iife.min.js" with { type: "text" };
import { createPolicy, POLICY_NAMES } from "../../policies/mod.ts";
import { AUTHORIZATION_KEY, checkToken } from "../wire/auth.ts";
import { setPolicy } from "./balancer_service.ts";
import pageCss from "./dashboard/dashboard.css" with { type: "text" };
import pageJs from "./dashboard/dashboard.js" with { type: "text" };
import pageHtml from "./dashboard/index.html" with { type: "text" };
import type { Route } from "../ops/http_server.ts";
import type { LoadProber } from "../picking/load_prober.ts";
import type { Picker } from "../picking/picker.ts";
import type { ServerSet } from "../picking/server_set.ts";
import type { SharedPolicy } from "../etcd/shared_policy.ts";
import type { WatchBroadcast } from "./watch_broadcast.ts";
import type { AdsStats } from "../xds/ads_server.ts";

/** Period of the pick-share samples and of the messages on `/events`. */
export const DASHBOARD_INTERVAL_MS = 1_000;
/** Most `/events` streams at once; more are answered 503. */
export const MAX_DASHBOARD_SUBSCRIBERS = 16;
/** Largest `POST /policy` body accepted, in bytes. */
export const MAX_POLICY_BODY_BYTES = 1_024;
/** Messages a viewer may fall behind by before its stream is ended (a stalled tab). */
const MAX_BACKLOG_MESSAGES = 60;

/** One server on the dashboard. */
export interface DashboardServer {
  address: string;
  /** In the picks (not failing its health checks). */
  healthy: boolean;
  /** Last reported load; `null` before the first report. */
  cpuLoad: number | null;
  inFlight: number | null;
  queueLength: number | null;
  reportAgeMs: number | null;
  /** Weight under the policy; `null` when the policy has none or the server is out of the picks. */
  weight: number | null;
  /** Its last probe answer (`prequal`): requests in flight, expected latency (ms); `null`: none. */
  probeRif: number | null;
  probeLatencyMs: number | null;
  /** Picks of this server in the last interval. */
  picks: number;
  /** `picks` over all picks of the interval, 0 to 1; `null` when there were none. */
  share: number | null;
}

/** What one `/events` message carries. */
export interface DashboardState {
  /** Wall-clock time of the message, ms since the epoch. */
  time: number;
  policy: string;
  policies: readonly string[];
  /** Whether the active policy weighs servers. */
  weighted: boolean;
  /** Whether `POST /policy` needs the control-plane token. */
  tokenRequired: boolean;
  /** The last interval of picks (`null` until one has passed): its end and length, in ms. */
  window: { end: number; ms: number; picks: number } | null;
  servers: DashboardServer[];
  /** xDS clients (`--xds-service`): streams open, ACKs, NACKs and the last NACK; `null`: none served. */
  xds: {
    streams: number;
    acks: number;
    nacks: number;
    lastNack: NonNullable<AdsStats["lastNack"]> | null;
  } | null;
}

/** What the dashboard works on. */
export interface DashboardDeps {
  set: ServerSet;
  picker: Picker;
  /** Told of a policy change, as `SetPolicy` does. */
  watch: WatchBroadcast;
  /** Control-plane token `POST /policy` requires; none: open, as the admin RPC. */
  token?: string;
  /** The HTTP server's `stopping` signal (read when a stream opens). */
  stopping: () => AbortSignal;
  /** The clock load reports are stamped with (ms). @default {performance.now} */
  clock?: () => number;
  /** The policy shared in etcd, once the balancer has started; none: a policy of its own. */
  sharedPolicy?: () => SharedPolicy | undefined;
  /** Who probes for `prequal`, for each server's last answer; none: no probe columns filled. */
  prober?: () => LoadProber | undefined;
  /** What xDS clients have done; none (or undefined): the balancer serves no xDS. */
  xds?: () => Readonly<AdsStats> | undefined;
}

/** The dashboard's routes: the page, its assets, `/events` and `POST /policy`. */
export function dashboardRoutes(deps: DashboardDeps): Record<string, Route> {
  const feed = new DashboardFeed(deps);
  return {
    "/": asset(pageHtml, "text/html; charset=utf-8"),
    "/dashboard.js": asset(pageJs, "text/javascript; charset=utf-8"),
    "/dashboard.css": asset(pageCss, "text/css; charset=utf-8"),
    "/uplot.js": asset(uplotJs, "text/javascript; charset=utf-8"),
    "/uplot.css": asset(uplotCss, "text/css; charset=utf-8"),
    "/events": { GET: () => feed.subscribe(deps.stopping()) },
    "/policy": { POST: (request) => postPolicy(deps, feed, request) },
  };
}

/** Headers of every dashboard response: nothing but the balancer itself may be loaded. */
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
};

function asset(body: string, type: string): Route {
  return {
    GET: () =>
      new Response(body, {
        headers: { "content-type": type, "cache-control": "no-cache", ...SECURITY_HEADERS },
      }),
  };
}

function text(status: number, message: string, headers: Record<string, string> = {}): Response {
  return new Response(`${message}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS, ...headers },
  });
}

/**
 * `POST /policy` with `{"policy": "<name>"}`: the token first (as the admin RPC), then the body,
 * then the same change as `SetPolicy`. JSON only, so a cross-site form cannot post it.
 */
async function postPolicy(deps: DashboardDeps, feed: DashboardFeed, request: Request) {
  if (deps.token !== undefined) {
    const metadata = new grpc.Metadata();
    const header = request.headers.get(AUTHORIZATION_KEY);
    if (header !== null) metadata.set(AUTHORIZATION_KEY, header);
    const denied = checkToken(metadata, deps.token);
    if (denied) return text(401, denied.details, { "www-authenticate": "Bearer" });
  }
  const usage = 'Send {"policy": "<name>"} with Content-Type: application/json';
  if (!/^application\/json\b/i.test(request.headers.get("content-type") ?? "")) {
    return text(415, usage);
  }
  const length = Number(request.headers.get("content-length"));
  if (!(length <= MAX_POLICY_BODY_BYTES)) {
    return text(413, `${usage}, at most ${MAX_POLICY_BODY_BYTES} bytes`);
  }
  let name: unknown;
  try {
    name = JSON.parse(await request.text())?.policy;
  } catch {
    name = undefined;
  }
  if (typeof name !== "string") return text(400, `${usage}: the body is not that`);
  const change = await setPolicy(deps, name, "the dashboard (HTTP)");
  if (!change.ok) return text(change.reason === "invalid" ? 400 : 503, change.message);
  feed.push();
  return Response.json({ previous: change.previous, policy: change.policy }, {
    headers: SECURITY_HEADERS,
  });
}

/** Picks per address over the last interval, from the picker's cumulative counts. */
class PickWindow {
  #totals: Map<string, number> | undefined;
  #at = 0;
  /** The last interval, `undefined` until two readings were taken. */
  last: { end: number; ms: number; picks: Map<string, number>; total: number } | undefined;

  /** Takes a reading (wall-clock `now`, ms); from the second one on, `last` is their difference. */
  sample(counts: ReadonlyMap<string, ReadonlyMap<string, number>>, now: number): void {
    const totals = new Map<string, number>();
    for (const byAddress of counts.values()) {
      for (const [address, n] of byAddress) totals.set(address, (totals.get(address) ?? 0) + n);
    }
    if (this.#totals !== undefined) {
      const picks = new Map<string, number>();
      let total = 0;
      for (const [address, n] of totals) {
        const diff = n - (this.#totals.get(address) ?? 0);
        if (diff > 0) picks.set(address, diff);
        total += diff;
      }
      this.last = { end: now, ms: now - this.#at, picks, total };
    }
    this.#totals = totals;
    this.#at = now;
  }

  /** Forgets every reading (nobody watched for a while). */
  reset(): void {
    this.#totals = undefined;
    this.last = undefined;
  }
}

/**
 * The `/events` streams and what they are sent: the state once an interval, and soon after a
 * server joins, leaves or changes health. It runs only while someone watches, and ends every
 * stream when the HTTP server stops.
 */
class DashboardFeed {
  #deps: DashboardDeps;
  #clock: () => number;
  #weighted: ReadonlySet<string>;
  #window = new PickWindow();
  #streams = new Set<ReadableStreamDefaultController<Uint8Array>>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #pending: ReturnType<typeof setTimeout> | undefined;
  #unsubscribe: (() => void) | undefined;
  #membership = "";
  #encoder = new TextEncoder();

  constructor(deps: DashboardDeps) {
    this.#deps = deps;
    this.#clock = deps.clock ?? performance.now.bind(performance);
    this.#weighted = new Set(POLICY_NAMES.filter((name) => createPolicy(name).weights));
  }

  /** Opens a stream that gets the state now, then every interval, until `stopping` fires. */
  subscribe(stopping: AbortSignal): Response {
    if (stopping.aborted) return text(503, "The balancer is stopping");
    if (this.#streams.size >= MAX_DASHBOARD_SUBSCRIBERS) {
      return text(
        503,
        `Too many dashboard viewers (at most ${MAX_DASHBOARD_SUBSCRIBERS}): close one and reload`,
      );
    }
    let stream!: ReadableStreamDefaultController<Uint8Array>;
    const end = () => this.#end(stream);
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        stream = controller;
        if (this.#streams.size === 0) this.#startFeeding();
        this.#streams.add(controller);
        stopping.addEventListener("abort", end, { once: true });
        controller.enqueue(this.#encoder.encode(`retry: 2000\n${this.#message()}`));
      },
      cancel: () => {
        stopping.removeEventListener("abort", end);
        this.#end(stream);
      },
    });
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        ...SECURITY_HEADERS,
      },
    });
  }

  /** Sends the state to every stream now. */
  push(): void {
    if (this.#streams.size === 0) return;
    const message = this.#encoder.encode(this.#message());
    for (const stream of this.#streams) {
      if ((stream.desiredSize ?? 0) < -MAX_BACKLOG_MESSAGES) this.#end(stream);
      else stream.enqueue(message);
    }
  }

  #startFeeding(): void {
    this.#window.reset();
    this.#window.sample(this.#deps.picker.pickCounts(), Date.now());
    this.#timer = setInterval(() => {
      this.#window.sample(this.#deps.picker.pickCounts(), Date.now());
      this.push();
    }, DASHBOARD_INTERVAL_MS);
    // A join, a leave or a health change goes out at once rather than at the next tick.
    this.#membership = this.#membershipKey();
    this.#unsubscribe = this.#deps.set.onSnapshot(() => {
      const key = this.#membershipKey();
      if (key === this.#membership) return;
      this.#membership = key;
      this.#pending ??= setTimeout(() => {
        this.#pending = undefined;
        this.push();
      }, 50);
    });
  }

  #end(stream: ReadableStreamDefaultController<Uint8Array>): void {
    if (!this.#streams.delete(stream)) return;
    try {
      stream.close();
    } catch {
      // Already closed by the viewer leaving.
    }
    if (this.#streams.size > 0) return;
    clearInterval(this.#timer);
    clearTimeout(this.#pending);
    this.#pending = undefined;
    this.#unsubscribe?.();
  }

  #membershipKey(): string {
    const { set } = this.#deps;
    return `${set.size}:${set.snapshot.servers.map((s) => s.address).join(",")}`;
  }

  #message(): string {
    return `data: ${JSON.stringify(this.#state())}\n\n`;
  }

  #state(): DashboardState {
    const { set, picker } = this.#deps;
    set.flush(); // the picker sees every change made so far
    const now = this.#clock();
    const weighted = this.#weighted.has(picker.policyName);
    const weights = picker.weights();
    const last = this.#window.last;
    const row = (
      server: (typeof picker.snapshot.servers)[number],
      healthy: boolean,
      weight: number | null,
    ): DashboardServer => {
      const picks = last?.picks.get(server.address) ?? 0;
      const probe = this.#deps.prober?.()?.answerOf(server.address);
      return {
        address: server.address,
        healthy,
        cpuLoad: server.load?.cpuLoad ?? null,
        inFlight: server.load?.inFlight ?? null,
        queueLength: server.load ? server.load.queueLength ?? 0 : null,
        reportAgeMs: server.load ? Math.max(0, Math.round(now - server.load.reportedAtMs)) : null,
        weight,
        probeRif: probe?.rif ?? null,
        probeLatencyMs: probe && probe.latencyMs >= 0 ? probe.latencyMs : null,
        picks,
        share: last && last.total > 0 ? picks / last.total : null,
      };
    };
    const xds = this.#deps.xds?.();
    return {
      time: Date.now(),
      policy: picker.policyName,
      policies: POLICY_NAMES,
      weighted,
      tokenRequired: this.#deps.token !== undefined,
      window: last ? { end: last.end, ms: last.ms, picks: last.total } : null,
      servers: [
        ...picker.snapshot.servers.map((s, i) => row(s, true, weighted ? weights[i] : null)),
        ...set.ejected().map((s) => row(s, false, null)),
      ],
      xds: xds
        ? { streams: xds.streams, acks: xds.acks, nacks: xds.nacks, lastNack: xds.lastNack ?? null }
        : null,
    };
  }
}
