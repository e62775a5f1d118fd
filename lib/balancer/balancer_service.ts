/**
 * The `LoadBalancer` service handlers: input checks, then the set, registry and picker. Every bad
 * input answers a status with a message and changes nothing; with a control-plane token, the
 * control RPCs (and `GetServer`/`WatchServers` if asked) check it first and answer
 * UNAUTHENTICATED without it.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { MAX_ADDRESS_LENGTH, parseAddress } from "../wire/address.ts";
import { checkToken } from "../wire/auth.ts";
import type { BuiltinRegistry } from "./builtin_discovery.ts";
import { type BalancerMetrics, measured } from "../ops/metrics.ts";
import type { LoadProber, ProbeAnswer } from "../picking/load_prober.ts";
import type { Picker } from "../picking/picker.ts";
import type {
  ClientRequest,
  ListServersRequest,
  ListServersResponse,
  LoadReport,
  LoadReportResponse,
  RegistrationResponse,
  ServerList,
  ServerRegistration,
  ServerResponse,
  ServerStatus,
  SetPolicyRequest,
  SetPolicyResponse,
  WatchServersRequest,
} from "../wire/proto.ts";
import type { SharedPolicy } from "../etcd/shared_policy.ts";
import type { WatchBroadcast } from "./watch_broadcast.ts";
import type { ServerSet } from "../picking/server_set.ts";
import { statusError } from "../wire/status.ts";
import { getLogger } from "@logtape/logtape";
import { createPolicy, isPolicyName, POLICY_NAMES, type PolicyName } from "../../policies/mod.ts";
import type { ServerView } from "../../policies/types.ts";

const log = getLogger(["lb", "balancer"]);

/** Longest `client_id` accepted by `GetServer`. */
export const MAX_CLIENT_ID_LENGTH = 1_024;
/** Most entries accepted in `GetServer`'s `avoid`. */
export const MAX_AVOID = 16;
/**
 * Largest `in_flight` or `queue_length` accepted by `ReportLoad`. The fields are uint32, so a
 * negative count from a buggy backend arrives wrapped to about 4.29e9; no backend holds that many.
 */
export const MAX_REPORTED_TASKS = 1_000_000;

/** What the handlers work on. */
export interface BalancerServiceDeps {
  set: ServerSet;
  picker: Picker;
  /** Sends the probing policy's probes; its last answers are listed. None: nothing listed. */
  prober?: () => LoadProber | undefined;
  /** Present in builtin discovery; `undefined` when etcd is the source of membership. */
  registry: BuiltinRegistry | undefined;
  /** Where servers register in etcd mode, for error messages. */
  etcdPrefix: string;
  /** `WatchServers` subscriptions. */
  watch: WatchBroadcast;
  clock: () => number;
  /** Control-plane token the control RPCs require; none: every RPC is open. */
  token?: string;
  /** With `token`: require it on `GetServer` and `WatchServers` too. @default {false} */
  protectGetServer?: boolean;
  /**
   * Resolves once a server's first health check has ended; `RegisterServer` waits for it, so
   * its success means the server is in the picks (as in the original) if it is healthy.
   */
  whenChecked?: (address: string) => Promise<void>;
  /** Where `GetServer` latency and `ReportLoad` results are counted; none: not counted. */
  metrics?: Pick<BalancerMetrics, "getServerDuration" | "loadReports">;
  /** The policy shared in etcd, once the balancer has started; none: a policy of its own. */
  sharedPolicy?: () => SharedPolicy | undefined;
}

/**
 * What {@linkcode changePolicy} or {@linkcode setPolicy} did: the switch, or why it changed
 * nothing (`invalid`: not a policy name; `unavailable`: etcd did not take the shared policy).
 */
export type PolicyChange =
  | { ok: true; previous: string; policy: PolicyName }
  | { ok: false; reason: "invalid" | "unavailable"; message: string };

/**
 * What `SetPolicy` and the dashboard do: with a shared policy (etcd discovery), writes it to
 * etcd first, so every balancer switches, then switches this one ({@linkcode changePolicy}). If
 * etcd does not take it, nothing changes here either.
 */
export async function setPolicy(
  deps: Pick<BalancerServiceDeps, "picker" | "watch" | "sharedPolicy">,
  name: string,
  by: string,
): Promise<PolicyChange> {
  const shared = deps.sharedPolicy?.();
  if (shared && isPolicyName(name)) {
    try {
      await shared.publish(name);
    } catch (error) {
      return {
        ok: false,
        reason: "unavailable",
        message: `Cannot change the policy as etcd did not take it under ${shared.key}, where ` +
          `the balancers share it (${(error as Error).message}); nothing changed`,
      };
    }
  }
  return changePolicy(deps, name, by);
}

/**
 * Switches the picker to the policy called `name`, tells `WatchServers` subscribers and logs
 * who asked (`by`): what `SetPolicy` and the dashboard both do. An unknown name changes nothing.
 */
export function changePolicy(
  deps: Pick<BalancerServiceDeps, "picker" | "watch">,
  name: string,
  by: string,
): PolicyChange {
  if (!isPolicyName(name)) {
    return {
      ok: false,
      reason: "invalid",
      message: `policy must be one of ${POLICY_NAMES.join(", ")}: got '${name.slice(0, 100)}'`,
    };
  }
  const previous = deps.picker.policyName;
  deps.picker.setPolicy(createPolicy(name));
  log.info("Policy changed from {previous} to {policy} by {peer}", {
    previous,
    policy: name,
    peer: by,
  });
  deps.watch.changed();
  return { ok: true, previous, policy: name };
}

/** Creates the handlers of the `LoadBalancer` service. */
export function createBalancerHandlers(
  deps: BalancerServiceDeps,
): grpc.UntypedServiceImplementation {
  const { set, picker, registry } = deps;
  const howToRegister = registry
    ? "backends register with RegisterServer"
    : `backends register in etcd under ${deps.etcdPrefix}<host:port>`;

  const GetServer: grpc.handleUnaryCall<ClientRequest, ServerResponse> = (call, callback) => {
    const clientId = call.request.client_id;
    if (clientId.length > MAX_CLIENT_ID_LENGTH) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `client_id must be at most ${MAX_CLIENT_ID_LENGTH} characters: got ${clientId.length}`,
        ),
      );
    }
    const avoid = call.request.avoid ?? [];
    if (avoid.length > MAX_AVOID || avoid.some((a) => a.length > MAX_ADDRESS_LENGTH)) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `avoid must hold at most ${MAX_AVOID} addresses of at most ${MAX_ADDRESS_LENGTH} characters`,
        ),
      );
    }
    const result = picker.pick(clientId, avoid);
    if (result.kind === "none") {
      const why = set.size > 0
        ? `all ${set.size} known server(s) fail their health checks`
        : `${result.reason} (${howToRegister})`;
      return callback(statusError(grpc.status.UNAVAILABLE, `No server available: ${why}`));
    }
    callback(null, { server_address: result.server.address });
  };

  const RegisterServer: grpc.handleUnaryCall<ServerRegistration, RegistrationResponse> = (
    call,
    callback,
  ) => {
    const parsed = parseAddress(call.request.server_address);
    if (!parsed.ok) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `server_address must be host:port with a port from 1 to 65535: ${parsed.reason}`,
        ),
      );
    }
    if (!registry) {
      return callback(
        statusError(
          grpc.status.FAILED_PRECONDITION,
          `This balancer discovers servers in etcd: register under ${deps.etcdPrefix}${parsed.address}`,
        ),
      );
    }
    registry.register(parsed.address);
    const checked = deps.whenChecked?.(parsed.address) ?? Promise.resolve();
    checked.then(() => callback(null, { success: true }));
  };

  const ReportLoad: grpc.handleUnaryCall<LoadReport, LoadReportResponse> = (call, callback) => {
    const { server_address, cpu_load, in_flight, queue_length, qps, eps } = call.request;
    const parsed = parseAddress(server_address);
    if (!parsed.ok) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `server_address must be host:port with a port from 1 to 65535: ${parsed.reason}`,
        ),
      );
    }
    if (!Number.isFinite(cpu_load) || cpu_load < 0 || cpu_load > 100) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `cpu_load must be a percentage from 0 to 100: got ${cpu_load}`,
        ),
      );
    }
    if (![qps ?? 0, eps ?? 0].every((rate) => Number.isFinite(rate) && rate >= 0)) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `qps and eps must be finite rates >= 0: got qps ${qps}, eps ${eps}`,
        ),
      );
    }
    if (![in_flight ?? 0, queue_length ?? 0].every((n) => n <= MAX_REPORTED_TASKS)) {
      return callback(
        statusError(
          grpc.status.INVALID_ARGUMENT,
          `in_flight and queue_length must be task counts from 0 to ${MAX_REPORTED_TASKS} ` +
            `(a negative count arrives wrapped): got ${in_flight}, ${queue_length}`,
        ),
      );
    }
    const known = set.report(parsed.address, {
      cpuLoad: cpu_load,
      inFlight: in_flight ?? 0,
      queueLength: queue_length ?? 0,
      qps: qps ?? 0,
      eps: eps ?? 0,
    });
    if (!known) {
      return callback(
        statusError(
          grpc.status.NOT_FOUND,
          `Server ${parsed.address} is not registered (${howToRegister})`,
        ),
      );
    }
    registry?.heartbeat(parsed.address);
    callback(null, { success: true });
  };

  const ListServers: grpc.handleUnaryCall<ListServersRequest, ListServersResponse> = (
    _call,
    callback,
  ) => {
    set.flush(); // the picker sees every change made so far
    const now = deps.clock();
    const weights = picker.weights();
    const status = (server: ServerView, weight: number, healthy: boolean): ServerStatus => ({
      server_address: server.address,
      has_load: server.load !== undefined,
      cpu_load: server.load?.cpuLoad ?? 0,
      in_flight: server.load?.inFlight ?? 0,
      queue_length: server.load?.queueLength ?? 0,
      report_age_ms: server.load ? Math.max(0, Math.round(now - server.load.reportedAtMs)) : 0,
      qps: server.load?.qps ?? 0,
      weight,
      healthy,
      ...probeStatus(deps.prober?.()?.answerOf(server.address), now),
    });
    callback(null, {
      policy: picker.policyName,
      discovery: registry ? "builtin" : "etcd",
      servers: [
        ...picker.snapshot.servers.map((server, i) => status(server, weights[i], true)),
        ...set.ejected().map((server) => status(server, 0, false)),
      ],
    });
  };

  const SetPolicy: grpc.handleUnaryCall<SetPolicyRequest, SetPolicyResponse> = (call, callback) => {
    setPolicy(deps, call.request.policy, call.getPeer()).then((change) => {
      if (change.ok) return callback(null, { previous: change.previous, policy: change.policy });
      const code = change.reason === "invalid"
        ? grpc.status.INVALID_ARGUMENT
        : grpc.status.UNAVAILABLE;
      callback(statusError(code, change.message));
    });
  };

  const WatchServers: grpc.handleServerStreamingCall<WatchServersRequest, ServerList> = (call) =>
    deps.watch.handle(call, grpc.status);

  const control = guard(deps.token);
  const lookup = guard(deps.protectGetServer ? deps.token : undefined);
  const metrics = deps.metrics;
  return {
    GetServer: lookup(
      metrics
        ? measured(GetServer, deps.clock, (_c, _e, s) => metrics.getServerDuration.observe(s))
        : GetServer,
    ),
    RegisterServer: control(RegisterServer),
    ReportLoad: control(
      metrics
        ? measured(
          ReportLoad,
          deps.clock,
          (_c, e) => metrics.loadReports.inc({ result: reportResult(e) }),
        )
        : ReportLoad,
    ),
    ListServers: control(ListServers),
    SetPolicy: control(SetPolicy),
    WatchServers: lookup(WatchServers),
  } as grpc.UntypedServiceImplementation;
}

/** The `result` label of a `ReportLoad` answer. */
function reportResult(error: grpc.ServiceError | null): string {
  if (!error) return "ok";
  return error.code === grpc.status.NOT_FOUND ? "not_found" : "invalid";
}

/** A unary or server-streaming handler (what the `LoadBalancer` service has). */
type Handler =
  // deno-lint-ignore no-explicit-any
  | grpc.handleUnaryCall<any, any>
  // deno-lint-ignore no-explicit-any
  | grpc.handleServerStreamingCall<any, any>;

/** Wraps handlers so they run only for calls carrying `token` (all of them without one). */
function guard(token: string | undefined): <H extends Handler>(handler: H) => H {
  if (token === undefined) return (handler) => handler;
  return <H extends Handler>(handler: H) =>
    ((call: Parameters<H>[0], callback?: grpc.sendUnaryData<unknown>) => {
      const denied = checkToken(call.metadata, token);
      if (!denied) return (handler as (...args: unknown[]) => void)(call, callback);
      log.debug("Refused {peer}: {reason}", { peer: call.getPeer(), reason: denied.details });
      if (callback) callback(denied);
      else (call as grpc.ServerWritableStream<unknown, unknown>).emit("error", denied); // ends it
    }) as H;
}

/** The `ServerStatus` fields of a server's last probe answer. */
function probeStatus(
  answer: Readonly<ProbeAnswer> | undefined,
  nowMs: number,
): Pick<ServerStatus, "has_probe" | "probe_rif" | "probe_latency_ms" | "probe_age_ms"> {
  if (answer === undefined) {
    return { has_probe: false, probe_rif: 0, probe_latency_ms: 0, probe_age_ms: 0 };
  }
  return {
    has_probe: true,
    probe_rif: Math.round(answer.rif),
    probe_latency_ms: answer.latencyMs,
    probe_age_ms: Math.max(0, Math.round(nowMs - answer.atMs)),
  };
}
