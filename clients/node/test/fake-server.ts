/**
 * A small in-memory Echo server over real HTTP/2 sockets, for the client's
 * own tests: it runs "Add" (checking its arguments as the real plan does),
 * "Echo" and "Hold" (stays running until cancelled), journals numbered
 * events, filters them by action id, name and state (refusing an unknown
 * state as the real server does), and can be told to fail the next call or to
 * cut every connection, so that reconnects and error mapping are tested
 * without the real service.
 */

import * as http2 from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  type Action,
  type ActionEvent,
  ActionEventSchema,
  ActionSchema,
  ActionState,
  type Value,
  ValueSchema,
} from "../src/gen/echo/v1/action_pb.js";
import {
  type ConnectRequest,
  type ConnectResponseSchema,
  EchoService,
  type StreamRequest,
  StreamRequestSchema,
  type StreamResponseSchema,
} from "../src/gen/echo/v1/echo_service_pb.js";
import { BadRequestSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { AsyncQueue } from "../src/queue.js";

type StreamOut = MessageInitShape<typeof StreamResponseSchema>;
type ConnectOut = MessageInitShape<typeof ConnectResponseSchema>;

function matches(event: ActionEvent, filter: StreamRequest): boolean {
  const { actionIds: ids, actionNames: names, states } = filter;
  return (
    (ids.length === 0 || ids.includes(event.actionId)) &&
    (names.length === 0 || names.includes(event.actionName)) &&
    (states.length === 0 || states.includes(event.state))
  );
}

/** The real server's refusal of UNSPECIFIED or a number outside the enum. */
function checkStates(request: StreamRequest, path: string): void {
  const bad = request.states.findIndex((state) => state === ActionState.UNSPECIFIED || ActionState[state] === undefined);
  if (bad < 0) return;
  const field = `${path}states[${bad}]`;
  throw new ConnectError("bad stream filter", Code.InvalidArgument, undefined, [
    { desc: BadRequestSchema, value: { fieldViolations: [{ field, description: `not a state: ${request.states[bad]}` }] } },
  ]);
}

export class FakeEcho {
  readonly actions = new Map<string, Action>();
  readonly events: ActionEvent[] = [];
  /** Request headers of every call, in arrival order. */
  readonly headers: Headers[] = [];
  /** Every Stream request, in arrival order. */
  readonly streamRequests: StreamRequest[] = [];
  /** Every session subscribe, in arrival order. */
  readonly subscribeRequests: StreamRequest[] = [];
  /** Thrown by the next unary call, then cleared. */
  failNext: ConnectError | undefined;
  /** Unary calls take this long before answering. */
  delayMs = 0;
  /** Sent by the next Stream call as its first message (then cleared). */
  endNextStream: { reason: string; retryable: boolean } | undefined;
  /**
   * When set, every Stream call ends as soon as it caught up: a heartbeat,
   * the journaled events it asks for, then this end.
   */
  endEveryStream: { reason: string; retryable: boolean } | undefined;
  heartbeatMs = 50;
  /** Stream and Connect calls whose handler is still running. */
  openStreams = 0;
  private readonly sockets = new Set<Socket>();
  private readonly changed = new Set<() => void>();
  private readonly server: http2.Http2Server;
  private ids = 0;

  constructor() {
    this.server = http2.createServer(connectNodeAdapter({ routes: (router) => this.routes(router) }));
    this.server.on("connection", (socket: Socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Cuts every open connection, as a dying proxy would. */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** Resolves once `predicate` holds; checked after every change. */
  async until(predicate: () => boolean): Promise<void> {
    while (!predicate()) await this.nextChange();
  }

  private nextChange(): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        this.changed.delete(wake);
        resolve();
      };
      this.changed.add(wake);
    });
  }

  /** Wakes every `until` and stream waiting for a change. */
  private notify(): void {
    for (const wake of [...this.changed]) wake();
  }

  private record(action: Action, state: ActionState, result?: Value): void {
    action.state = state;
    if (result !== undefined) action.result = result;
    this.events.push(
      create(ActionEventSchema, {
        sequence: BigInt(this.events.length + 1),
        actionId: action.id,
        actionName: action.name,
        state,
        attempt: action.attempt,
        time: timestampNow(),
        result,
      }),
    );
    this.notify();
  }

  private assign(request: Action | undefined): Action {
    if (request === undefined || request.name === "") {
      throw new ConnectError("action.name is required", Code.InvalidArgument, undefined, [
        { desc: BadRequestSchema, value: { fieldViolations: [{ field: "action.name", description: "required" }] } },
      ]);
    }
    if (request.name === "Add") {
      const bad = request.args.findIndex((arg) => arg.kind.case !== "intValue");
      if (bad >= 0 || request.args.length !== 2) {
        const field = bad >= 0 ? `action.args[${bad}]` : "action.args";
        throw new ConnectError("invalid action", Code.InvalidArgument, undefined, [
          { desc: BadRequestSchema, value: { fieldViolations: [{ field, description: "expected an integer" }] } },
        ]);
      }
    }
    const action = create(ActionSchema, { ...request, id: `a${++this.ids}`, createTime: timestampNow() });
    this.actions.set(action.id, action);
    this.record(action, ActionState.ACCEPTED);
    setImmediate(() => this.execute(action));
    return action;
  }

  private execute(action: Action): void {
    if (action.state !== ActionState.ACCEPTED) return;
    action.attempt = 1;
    this.record(action, ActionState.RUNNING);
    const [first, second] = action.args.map((arg) => arg.kind);
    if (action.name === "Add" && first?.case === "intValue" && second?.case === "intValue") {
      const sum = create(ValueSchema, { kind: { case: "intValue", value: first.value + second.value } });
      this.record(action, ActionState.SUCCEEDED, sum);
    } else if (action.name === "Echo") {
      this.record(action, ActionState.SUCCEEDED, action.args[0]);
    } else if (action.name !== "Hold") {
      action.error = { $typeName: "echo.v1.ActionError", type: "KeyError", message: action.name, kind: 1, nonRetryable: true, details: "" };
      this.record(action, ActionState.FAILED);
    }
  }

  private async unary<T>(context: HandlerContext, answer: () => T): Promise<T> {
    this.headers.push(context.requestHeader);
    if (this.delayMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.delayMs);
        context.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    // A call its client gave up on must not take the failure meant for the next.
    if (context.signal.aborted) throw new ConnectError("call ended", Code.Canceled);
    const failure = this.failNext;
    this.failNext = undefined;
    if (failure !== undefined) throw failure;
    return answer();
  }

  private get(id: string): Action {
    const action = this.actions.get(id);
    if (action === undefined) throw new ConnectError(`no action ${id}`, Code.NotFound);
    return action;
  }

  /** Replays journaled events after `after`, then follows live ones. */
  private async *follow(request: StreamRequest, signal: AbortSignal): AsyncGenerator<ActionEvent | bigint> {
    let next = request.afterSequence === undefined ? this.events.length : Number(request.afterSequence);
    while (!signal.aborted) {
      while (next < this.events.length) {
        const event = this.events[next++] as ActionEvent;
        if (matches(event, request)) yield event;
      }
      const timer = new Promise<"heartbeat">((resolve) => setTimeout(() => resolve("heartbeat"), this.heartbeatMs));
      // A heartbeat names the position handled so far: a safe resume point.
      if ((await Promise.race([this.nextChange().then(() => "change" as const), timer])) === "heartbeat") yield BigInt(next);
    }
  }

  private routes(router: ConnectRouter): void {
    router.service(EchoService, {
      assign: (request, context) => this.unary(context, () => ({ action: this.assign(request.action) })),
      assignMany: (request, context) =>
        this.unary(context, () => ({ results: request.actions.map((action) => ({ action: this.assign(action) })) })),
      getAction: (request, context) => this.unary(context, () => ({ action: this.get(request.id) })),
      cancel: (request, context) =>
        this.unary(context, () => {
          const action = this.get(request.id);
          this.record(action, ActionState.CANCELLED);
          return { action };
        }),
      listSignatures: (_request, context) => this.unary(context, () => ({ signatures: [{ name: "Add" }, { name: "Echo" }] })),
      stream: (request, context) => this.stream(request, context),
      connect: (requests, context) => this.connect(requests, context),
    });
  }

  private async *stream(request: StreamRequest, context: HandlerContext): AsyncGenerator<StreamOut> {
    this.openStreams += 1;
    try {
      yield* this.streamMessages(request, context);
    } finally {
      this.openStreams -= 1;
      this.notify();
    }
  }

  private async *streamMessages(request: StreamRequest, context: HandlerContext): AsyncGenerator<StreamOut> {
    this.headers.push(context.requestHeader);
    this.streamRequests.push(request);
    this.notify();
    checkStates(request, "");
    const end = this.endNextStream;
    this.endNextStream = undefined;
    if (end !== undefined) {
      yield { kind: { case: "end", value: { ...end, lastSequence: request.afterSequence ?? 0n } } };
      return;
    }
    if (this.endEveryStream !== undefined) {
      const head = this.events.length;
      yield { kind: { case: "heartbeat", value: { lastSequence: request.afterSequence ?? BigInt(head) } } };
      for (const event of this.events.slice(Number(request.afterSequence ?? head), head)) {
        if (matches(event, request)) yield { kind: { case: "event", value: event } };
      }
      yield { kind: { case: "end", value: { ...this.endEveryStream, lastSequence: BigInt(head) } } };
      return;
    }
    for await (const item of this.follow(request, context.signal)) {
      yield typeof item === "bigint"
        ? { kind: { case: "heartbeat", value: { lastSequence: item } } }
        : { kind: { case: "event", value: item } };
    }
  }

  /** Feeds a session subscription's events into the session's output. */
  private async deliver(filter: StreamRequest, requestId: string, out: AsyncQueue<ConnectOut>, signal: AbortSignal): Promise<void> {
    for await (const item of this.follow(filter, signal)) {
      if (out.isClosed) return;
      if (typeof item !== "bigint") out.push({ requestId, kind: { case: "event", value: item } });
    }
  }

  private async *connect(requests: AsyncIterable<ConnectRequest>, context: HandlerContext): AsyncGenerator<ConnectOut> {
    this.headers.push(context.requestHeader);
    const out = new AsyncQueue<ConnectOut>();
    const owners = new Map<string, string>();
    const follower = (async () => {
      for await (const item of this.follow(create(StreamRequestSchema), context.signal)) {
        if (typeof item === "bigint") continue;
        const owner = owners.get(item.actionId);
        if (owner !== undefined && !out.isClosed) out.push({ requestId: owner, kind: { case: "event", value: item } });
      }
    })();
    const reader = (async () => {
      for await (const request of requests) {
        const kind = request.kind;
        try {
          if (kind.case === "assign") {
            const action = this.assign(kind.value.action);
            owners.set(action.id, request.requestId);
            out.push({ requestId: request.requestId, kind: { case: "assigned", value: { action } } });
          } else if (kind.case === "cancel") {
            const action = this.get(kind.value.id);
            this.record(action, ActionState.CANCELLED);
            out.push({ requestId: request.requestId, kind: { case: "cancelled", value: { action } } });
          } else if (kind.case === "subscribe") {
            this.subscribeRequests.push(kind.value);
            checkStates(kind.value, "subscribe.");
            const lastSequence = BigInt(this.events.length);
            out.push({ requestId: request.requestId, kind: { case: "subscribed", value: { lastSequence } } });
            void this.deliver(kind.value, request.requestId, out, context.signal);
          }
        } catch (error) {
          const failure = ConnectError.from(error);
          out.push({
            requestId: request.requestId,
            kind: {
              case: "error",
              value: {
                code: failure.code,
                message: failure.rawMessage,
                fieldViolations: failure
                  .findDetails(BadRequestSchema)
                  .flatMap((details) => details.fieldViolations.map(({ field, description }) => ({ field, description }))),
              },
            },
          });
        }
      }
      out.push({ kind: { case: "end", value: { reason: "client closed", retryable: false } } });
      out.close();
    })();
    yield* out;
    await reader;
    void follower;
  }
}
