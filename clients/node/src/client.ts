/**
 * The Echo client: real gRPC over HTTP/2 through Connect's gRPC transport.
 *
 * Every unary call has a deadline (30 s unless the client or the call says
 * otherwise) and a W3C traceparent. Event streams have no deadline unless one
 * is given, and reconnect on their own: after a dropped connection, an
 * UNAVAILABLE status or a retryable end message they wait a jittered,
 * growing delay and ask again for the events after the last sequence number
 * they delivered, so a consumer sees every event once, in order.
 */

import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type CallOptions as ConnectCallOptions, type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { type ActionInit, type ActionOptionsInit, FINAL_STATES, isFinal, toAction } from "./actions.js";
import { type BackoffOptions, backoffDelayMs, resolveBackoff, sleep } from "./backoff.js";
import { StreamDeadline } from "./deadline.js";
import { ActionFailedError, Code, DeadlineExceededError, type EchoError, echoError, toEchoError, UnavailableError } from "./errors.js";
import { type Action, type ActionEvent, type ActionSignature, ActionState } from "./gen/echo/v1/action_pb.js";
import { EchoService, StreamRequestSchema, type StreamResponse } from "./gen/echo/v1/echo_service_pb.js";
import { Session, type SessionOptions } from "./session.js";
import { newTraceparent, type TraceContext } from "./trace.js";
import { type Arg, fromValue, type Result } from "./values.js";

/** Options of a client. Every field is optional. */
export interface ClientOptions {
  /** Deadline of each unary call that gives none of its own. Default 30 000 ms; 0: none. */
  timeoutMs?: number;
  /**
   * The trace context of the caller's current operation, asked for at each
   * call (an OpenTelemetry propagator fits here). When it returns nothing,
   * each call starts a new trace.
   */
  traceContext?: () => TraceContext | undefined;
  /** Metadata sent with every call, e.g. `{ authorization: "Bearer ..." }`. */
  headers?: Record<string, string>;
  /** How event streams space their reconnects. */
  reconnect?: BackoffOptions;
}

/** Options of one call. */
export interface CallOptions {
  /** Deadline of this call; 0: none. Default: the client's `timeoutMs`. */
  timeoutMs?: number;
  /** Aborts the call; it then fails with CancelledError. */
  signal?: AbortSignal;
  /** This call's trace context, instead of the client's. */
  trace?: TraceContext;
}

/** Options of `assign`: the action's options and the call's. */
export type AssignOptions = ActionOptionsInit & CallOptions;

/** Which events a stream delivers. Every field is optional. */
export interface EventFilter {
  /** Only events of these actions. */
  actionIds?: string[];
  /** Only events of actions with these names. */
  actionNames?: string[];
  /**
   * Only events in these states, e.g. SUCCEEDED, FAILED and CANCELLED for a
   * listener that waits for results and needs no transition before them.
   * Unset or empty: every state. The server refuses UNSPECIFIED (and a
   * number outside the enum) with InvalidArgumentError, which ends the stream
   * without a reconnect.
   */
  states?: ActionState[];
  /**
   * Replay the journaled events after this sequence, then go live. Unset:
   * live events only. `0n`: everything still journaled.
   */
  afterSequence?: bigint;
  /** How often the server sends a heartbeat when idle. Server default 15 s. */
  heartbeatIntervalMs?: number;
  /** Deadline of the whole stream, reconnects included. Default: none. */
  timeoutMs?: number;
  /** Ends the stream; iteration then throws CancelledError. */
  signal?: AbortSignal;
  /** This stream's reconnect spacing, instead of the client's. */
  reconnect?: BackoffOptions;
}

/** Options of `wait` and `run`. */
export interface WaitOptions {
  /** How long to wait in all. Default: no limit. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * Whether an event stream reconnects after `error`. Connect reports a
 * connection cut under a running stream as CANCELLED (the HTTP/2 stream was
 * reset); a cancel of the caller's own is told apart by its signal.
 */
function reconnects(error: EchoError): boolean {
  return [Code.Unavailable, Code.ResourceExhausted, Code.Aborted, Code.Canceled].includes(error.code);
}

const DEFAULT_TIMEOUT_MS = 30_000;

type StreamKind = StreamResponse["kind"];

/** A client of one Echo server. Close it when done, or the process stays up. */
export class EchoClient {
  /** The generated Connect client, for what the wrapper does not cover. */
  readonly raw: Client<typeof EchoService>;
  private readonly sessions: Http2SessionManager;
  private readonly timeoutMs: number;
  private readonly reconnect: BackoffOptions;

  /** `target` is "host:port" or a URL such as "http://host:port". */
  constructor(target: string, options: ClientOptions = {}) {
    const baseUrl = target.includes("://") ? target : `http://${target}`;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.reconnect = options.reconnect ?? {};
    resolveBackoff(this.reconnect);
    this.sessions = new Http2SessionManager(baseUrl);
    const headers = Object.entries(options.headers ?? {});
    const traceContext = options.traceContext;
    const metadata: Interceptor = (next) => (request) => {
      for (const [name, value] of headers) request.header.set(name, value);
      if (!request.header.has("traceparent")) {
        const trace = traceContext?.();
        request.header.set("traceparent", trace?.traceparent ?? newTraceparent());
        if (trace?.tracestate) request.header.set("tracestate", trace.tracestate);
      }
      return next(request);
    };
    const transport = createGrpcTransport({ baseUrl, sessionManager: this.sessions, interceptors: [metadata] });
    this.raw = createClient(EchoService, transport);
  }

  /** Closes the HTTP/2 connection; calls still running fail. */
  close(): void {
    this.sessions.abort();
  }

  /** Connect's options for a call: deadline, signal and trace headers. */
  private callOptions(options: CallOptions, timeoutMs: number = this.timeoutMs): ConnectCallOptions {
    const headers: Record<string, string> = {};
    if (options.trace !== undefined) {
      headers["traceparent"] = options.trace.traceparent;
      if (options.trace.tracestate) headers["tracestate"] = options.trace.tracestate;
    }
    // Connect reads a timeout of 0 or less as "no deadline".
    return { timeoutMs: options.timeoutMs ?? timeoutMs, signal: options.signal, headers };
  }

  private async unary<T>(call: (options: ConnectCallOptions) => Promise<T>, options: CallOptions): Promise<T> {
    try {
      return await call(this.callOptions(options));
    } catch (error) {
      throw toEchoError(error);
    }
  }

  /** Assigns one action; resolves once the server has journaled it. */
  async assign(name: string, args: readonly Arg[] = [], options: AssignOptions = {}): Promise<Action> {
    const action = toAction({ ...options, name, args });
    const response = await this.unary((o) => this.raw.assign({ action }, o), options);
    return required(response.action, "AssignResponse.action");
  }

  /** Assigns many actions at once, all or none; results in request order. */
  async assignMany(actions: readonly ActionInit[], options: CallOptions = {}): Promise<Action[]> {
    const request = { actions: actions.map(toAction) };
    const response = await this.unary((o) => this.raw.assignMany(request, o), options);
    return response.results.map((result) => required(result.action, "AssignResponse.action"));
  }

  /** The action as journaled now. */
  async get(id: string, options: CallOptions = {}): Promise<Action> {
    const response = await this.unary((o) => this.raw.getAction({ id }, o), options);
    return required(response.action, "GetActionResponse.action");
  }

  /** Cancels an action: at once if waiting, through its token if running. */
  async cancel(id: string, reason = "", options: CallOptions = {}): Promise<Action> {
    const response = await this.unary((o) => this.raw.cancel({ id, reason }, o), options);
    return required(response.action, "CancelResponse.action");
  }

  /** The signatures of the server's plan, ordered by name. */
  async listSignatures(options: CallOptions = {}): Promise<ActionSignature[]> {
    const response = await this.unary((o) => this.raw.listSignatures({}, o), options);
    return response.signatures;
  }

  /** The action once it is final (SUCCEEDED, FAILED or CANCELLED). */
  async wait(id: string, options: WaitOptions = {}): Promise<Action> {
    const deadline = options.timeoutMs === undefined ? undefined : Date.now() + options.timeoutMs;
    const remaining = (): CallOptions => ({
      signal: options.signal,
      timeoutMs: deadline === undefined ? undefined : Math.max(1, deadline - Date.now()),
    });
    // Subscribing replays the action's journaled events from the start, so a
    // final event is seen even when it came before the stream opened; asking
    // for the final states alone keeps the transitions before it off the
    // wire. A heartbeat re-reads the action, in case its events were pruned.
    const messages = this.messages({
      actionIds: [id],
      states: [...FINAL_STATES],
      afterSequence: 0n,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
    });
    for await (const kind of messages) {
      if (kind.case === "event" && isFinal(kind.value.state)) return this.get(id, remaining());
      if (kind.case === "heartbeat") {
        const action = await this.get(id, remaining());
        if (isFinal(action.state)) return action;
      }
    }
    const action = await this.get(id, remaining());
    if (isFinal(action.state)) return action;
    throw new UnavailableError(Code.Unavailable, `the server ended the event stream before action ${id} finished`);
  }

  /**
   * Assigns an action, waits for it and returns its result; throws
   * ActionFailedError when it failed or was cancelled.
   */
  async run(name: string, args: readonly Arg[] = [], options: AssignOptions & WaitOptions = {}): Promise<Result> {
    const { id } = await this.assign(name, args, options);
    const action = await this.wait(id, options);
    if (action.state !== ActionState.SUCCEEDED) throw new ActionFailedError(action);
    return fromValue(action.result);
  }

  /** Action events, live or replayed, as an async iterator that reconnects. */
  async *events(filter: EventFilter = {}): AsyncGenerator<ActionEvent, void, undefined> {
    for await (const kind of this.messages(filter)) {
      if (kind.case === "event") yield kind.value;
    }
  }

  /** Opens a bidirectional session. Close it when done. */
  connect(options: SessionOptions & { trace?: TraceContext } = {}): Session {
    return new Session(this.raw, options, this.callOptions(options, 0));
  }

  /** Every stream message, across reconnects. Returns on a final end message. */
  private async *messages(filter: EventFilter): AsyncGenerator<StreamKind, void, undefined> {
    const backoff = resolveBackoff(filter.reconnect ?? this.reconnect);
    const deadline = filter.timeoutMs === undefined ? undefined : Date.now() + filter.timeoutMs;
    let after = filter.afterSequence;
    // Failed calls since the last heartbeat or event: past maxAttempts, give up.
    let failures = 0;
    // Reconnects since the last event: each waits longer. A server that ends
    // every stream at once still sends a heartbeat first, so heartbeats must
    // not start the delays again.
    let attempt = 0;
    for (;;) {
      let failure: EchoError;
      let minimumDelayMs = 0;
      try {
        const timeoutMs = deadline === undefined ? 0 : deadline - Date.now();
        if (deadline !== undefined && timeoutMs <= 0) {
          throw new DeadlineExceededError(Code.DeadlineExceeded, "the event stream's deadline passed");
        }
        const request = create(StreamRequestSchema, {
          actionIds: filter.actionIds ?? [],
          actionNames: filter.actionNames ?? [],
          states: filter.states ?? [],
          afterSequence: after,
          heartbeatInterval: filter.heartbeatIntervalMs === undefined ? undefined : durationFromMs(filter.heartbeatIntervalMs),
        });
        let ended = false;
        const call = new StreamDeadline(timeoutMs, filter.signal);
        try {
          const options = this.callOptions({ signal: call.signal }, 0);
          const messages = this.raw.stream(request, { ...options, headers: { ...options.headers, ...call.headers } });
          for await (const message of messages) {
            const kind = message.kind;
            if (kind.case === "event") {
              failures = 0;
              attempt = 0;
              after = kind.value.sequence;
            } else if (kind.case === "heartbeat") {
              failures = 0;
              // The server's safe resume point: every matching event up to it
              // was delivered, so a quiet or live stream resumes from there.
              if (after === undefined || kind.value.lastSequence > after) after = kind.value.lastSequence;
            } else if (kind.case === "end") {
              if (!kind.value.retryable) return;
              const last = kind.value.lastSequence;
              if (last > 0n && (after === undefined || last > after)) after = last;
              ended = true;
            }
            yield kind;
            if (ended) break;
          }
        } finally {
          call.dispose();
        }
        failure = new UnavailableError(Code.Unavailable, ended ? "the server ended the stream" : "the stream closed without an end message");
      } catch (error) {
        failure = toEchoError(error);
        if (filter.signal?.aborted || !reconnects(failure)) throw failure;
        minimumDelayMs = failure.retryDelayMs ?? 0;
      }
      failures += 1;
      attempt += 1;
      if (failures > backoff.maxAttempts) throw failure;
      let delayMs = Math.max(minimumDelayMs, backoffDelayMs(attempt, backoff));
      if (deadline !== undefined) delayMs = Math.min(delayMs, Math.max(0, deadline - Date.now()));
      try {
        await this.pause(delayMs, filter.signal);
      } catch (error) {
        throw toEchoError(error);
      }
    }
  }

  /**
   * Waits `ms` before a stream reconnects, or rejects once `signal` aborts.
   * A subclass may replace it, as the tests do to count the delays.
   */
  protected pause(ms: number, signal?: AbortSignal): Promise<void> {
    return sleep(ms, signal);
  }
}

function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw echoError(Code.Internal, `the server sent no ${what}`);
  return value;
}
