/**
 * A bidirectional Connect session: assign, cancel and subscribe go out as
 * they are called, and each answer comes back tied to its request id.
 *
 * Concurrency: one pump (`run`) owns the response stream. It settles the
 * promise waiting under a reply's request id, or pushes an event into the
 * events queue; callers only add to `pending` and push requests. A session is
 * not resumed after a broken connection: what was in flight is unknown, so
 * every waiting request fails with the session's error, and so does the
 * events iterator once drained.
 */

import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { CallOptions as ConnectCallOptions, Client } from "@connectrpc/connect";
import { type ActionOptionsInit, toAction } from "./actions.js";
import { sleep } from "./backoff.js";
import { StreamDeadline } from "./deadline.js";
import { Code, type EchoError, echoError, fromRequestError, toEchoError } from "./errors.js";
import type { Action, ActionEvent, ActionState } from "./gen/echo/v1/action_pb.js";
import {
  type ConnectRequest,
  ConnectRequestSchema,
  type ConnectResponse,
  type EchoService,
  StreamRequestSchema,
  type StreamEnd,
} from "./gen/echo/v1/echo_service_pb.js";
import { AsyncQueue } from "./queue.js";
import type { Arg } from "./values.js";

/** Options of a session. */
export interface SessionOptions {
  /** Deadline of the whole session. Default: none. */
  timeoutMs?: number;
  /** Aborts the session. */
  signal?: AbortSignal;
  /**
   * Acknowledge each event as the events iterator hands it over (default).
   * With false, call `ack` yourself; the server holds back events once too
   * many are unacknowledged.
   */
  autoAck?: boolean;
}

/** An event and the request (assign or subscribe) it belongs to. */
export interface SessionEvent {
  requestId: string;
  event: ActionEvent;
}

/** The answer to an assign. */
export interface SessionAssigned {
  requestId: string;
  action: Action;
  /** True when the idempotency key named an earlier action. */
  duplicate: boolean;
}

/** What `subscribe` selects; see EventFilter. */
export interface SubscribeFilter {
  actionIds?: string[];
  actionNames?: string[];
  /**
   * Only events in these states; unset or empty: every state. An UNSPECIFIED
   * state fails this subscribe with InvalidArgumentError, not the session.
   */
  states?: ActionState[];
  afterSequence?: bigint;
  heartbeatIntervalMs?: number;
}

type Reply = Exclude<ConnectResponse["kind"], { case: "event" | "heartbeat" | "end" | undefined }>;

interface Waiter {
  resolve(reply: Reply): void;
  reject(error: EchoError): void;
}

export class Session {
  private readonly requests = new AsyncQueue<ConnectRequest>();
  private readonly queue = new AsyncQueue<SessionEvent>();
  private readonly pending = new Map<string, Waiter>();
  private readonly abortController = new AbortController();
  private readonly autoAck: boolean;
  private counter = 0;
  private failure: EchoError | undefined;
  /** The server's final message, once it ended the session on purpose. */
  end: StreamEnd | undefined;
  /** Settles when the response stream is over; never rejects. */
  readonly done: Promise<void>;

  constructor(raw: Client<typeof EchoService>, options: SessionOptions, callOptions: ConnectCallOptions) {
    this.autoAck = options.autoAck ?? true;
    const signal =
      options.signal === undefined ? this.abortController.signal : AbortSignal.any([options.signal, this.abortController.signal]);
    const deadline = new StreamDeadline(options.timeoutMs ?? 0, signal);
    const responses = raw.connect(this.requests, {
      ...callOptions,
      timeoutMs: 0,
      signal: deadline.signal,
      headers: { ...(callOptions.headers as Record<string, string>), ...deadline.headers },
    });
    this.done = this.run(responses).finally(() => deadline.dispose());
  }

  private async run(responses: AsyncIterable<ConnectResponse>): Promise<void> {
    try {
      for await (const response of responses) {
        const kind = response.kind;
        switch (kind.case) {
          case "event":
            this.queue.push({ requestId: response.requestId, event: kind.value });
            break;
          case "error":
            this.settle(response.requestId, (waiter) => waiter.reject(fromRequestError(kind.value)));
            break;
          case "end":
            this.end = kind.value;
            break;
          case "heartbeat":
          case undefined:
            break;
          default:
            this.settle(response.requestId, (waiter) => waiter.resolve(kind));
        }
      }
      this.finish(echoError(Code.Unavailable, `the server ended the session${this.end ? `: ${this.end.reason}` : ""}`));
    } catch (error) {
      this.finish(toEchoError(error));
    }
  }

  private settle(requestId: string, how: (waiter: Waiter) => void): void {
    const waiter = this.pending.get(requestId);
    if (waiter === undefined) return;
    this.pending.delete(requestId);
    how(waiter);
  }

  private finish(error: EchoError): void {
    this.failure = error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
    this.requests.close();
    // A session ended by the server on purpose, or closed by us, just ends
    // the events; a broken one hands the error to the events iterator.
    if (this.end !== undefined || this.abortController.signal.aborted || error.code === Code.Canceled) this.queue.close();
    else this.queue.fail(error);
  }

  private send(kind: ConnectRequest["kind"], id: string = this.nextId()): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.requests.isClosed) throw echoError(Code.FailedPrecondition, "the session is closed");
    this.requests.push(create(ConnectRequestSchema, { requestId: id, kind }));
  }

  private nextId(): string {
    this.counter += 1;
    return `r${this.counter}`;
  }

  private request(kind: ConnectRequest["kind"], requestId?: string): Promise<[string, Reply]> {
    return new Promise((resolve, reject) => {
      const id = requestId ?? this.nextId();
      try {
        if (this.pending.has(id)) throw echoError(Code.InvalidArgument, `request id ${id} is already waiting`);
        this.send(kind, id);
        // Set in the same turn as the push: no reply can arrive in between.
        this.pending.set(id, { resolve: (reply) => resolve([id, reply]), reject });
      } catch (error) {
        reject(error);
      }
    });
  }

  /** Assigns an action; its events arrive with the returned request id. */
  async assign(
    name: string,
    args: readonly Arg[] = [],
    options: ActionOptionsInit & { requestId?: string } = {},
  ): Promise<SessionAssigned> {
    const action = toAction({ ...options, name, args });
    const [requestId, reply] = await this.request({ case: "assign", value: { $typeName: "echo.v1.AssignRequest", action } }, options.requestId);
    if (reply.case !== "assigned" || reply.value.action === undefined) throw unexpected(reply.case);
    return { requestId, action: reply.value.action, duplicate: reply.value.duplicate };
  }

  /** Cancels an action. */
  async cancel(id: string, reason = ""): Promise<Action> {
    const [, reply] = await this.request({ case: "cancel", value: { $typeName: "echo.v1.CancelRequest", id, reason } });
    if (reply.case !== "cancelled" || reply.value.action === undefined) throw unexpected(reply.case);
    return reply.value.action;
  }

  /**
   * Subscribes to more events; they arrive with the returned request id.
   * Resolves with the highest sequence committed when it began.
   */
  async subscribe(filter: SubscribeFilter = {}): Promise<{ requestId: string; lastSequence: bigint }> {
    const value = create(StreamRequestSchema, {
      actionIds: filter.actionIds ?? [],
      actionNames: filter.actionNames ?? [],
      states: filter.states ?? [],
      afterSequence: filter.afterSequence,
      heartbeatInterval: filter.heartbeatIntervalMs === undefined ? undefined : durationFromMs(filter.heartbeatIntervalMs),
    });
    const [requestId, reply] = await this.request({ case: "subscribe", value });
    if (reply.case !== "subscribed") throw unexpected(reply.case);
    return { requestId, lastSequence: reply.value.lastSequence };
  }

  /** Acknowledges every event up to and including `sequence`. */
  ack(sequence: bigint): void {
    this.send({ case: "ack", value: { $typeName: "echo.v1.Ack", sequence } });
  }

  /** The session's events in arrival order, until the session ends. */
  async *events(): AsyncGenerator<SessionEvent, void, undefined> {
    for await (const item of this.queue) {
      if (this.autoAck && this.failure === undefined && !this.requests.isClosed) this.ack(item.event.sequence);
      yield item;
    }
  }

  /**
   * Half-closes the session: no more requests. The server then ends it; if it
   * has not within `graceMs`, the call is cancelled.
   */
  async close(graceMs = 5000): Promise<void> {
    this.requests.close();
    const timer = new AbortController();
    await Promise.race([this.done, sleep(graceMs, timer.signal).catch(() => undefined)]);
    timer.abort();
    this.abortController.abort();
    await this.done;
  }
}

function unexpected(what: string | undefined): EchoError {
  return echoError(Code.Internal, `unexpected reply ${what ?? "(empty)"} in the session`);
}
