import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { StreamRequest } from "../src/gen/echo/v1/echo_service_pb.js";
import { BadRequestSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import {
  type ActionEvent,
  ActionFailedError,
  ActionState,
  DeadlineExceededError,
  EchoClient,
  InvalidArgumentError,
  isFinal,
  NotFoundError,
  ResourceExhaustedError,
  traceIdOf,
  UnavailableError,
} from "../src/index.js";
import { FakeEcho } from "./fake-server.js";

const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

describe("EchoClient against a fake server", { timeout: 60_000 }, () => {
  let server: FakeEcho;
  let client: EchoClient;
  let target: string;

  before(async () => {
    server = new FakeEcho();
    target = await server.start();
    client = new EchoClient(target, { timeoutMs: 5000, reconnect: { initialMs: 10, maxMs: 50 } });
  });

  after(async () => {
    client.close();
    await server.stop();
  });

  beforeEach(() => {
    server.delayMs = 0;
    server.failNext = undefined;
  });

  it("assigns, waits and reads back an int64 result exactly", async () => {
    const action = await client.assign("Add", [2n ** 62n, 2n ** 62n - 1n]);
    assert.equal(action.name, "Add");
    const done = await client.wait(action.id, { timeoutMs: 5000 });
    assert.equal(done.state, ActionState.SUCCEEDED);
    assert.deepEqual(done.result?.kind, { case: "intValue", value: 2n ** 63n - 1n });
  });

  it("runs an action to its plain result, and throws ActionFailedError when it fails", async () => {
    assert.equal(await client.run("Echo", ["hi"], { timeoutMs: 5000 }), "hi");
    const failed = await client.run("Missing", [], { timeoutMs: 5000 }).catch((error: unknown) => error);
    assert.ok(failed instanceof ActionFailedError);
    assert.equal(failed.type, "KeyError");
    assert.equal(failed.action.state, ActionState.FAILED);
  });

  it("assigns many in request order", async () => {
    const actions = await client.assignMany([
      { name: "Echo", args: ["a"] },
      { name: "Echo", args: ["b"], priority: 0 },
    ]);
    assert.deepEqual(
      actions.map((action) => action.args[0]?.kind.value),
      ["a", "b"],
    );
    assert.equal(actions[1]?.options?.priority, 0, "an explicit zero priority is sent, not dropped");
    assert.equal(actions[0]?.options?.priority, undefined);
  });

  it("sends a fresh traceparent with each call, or the caller's own", async () => {
    await client.listSignatures();
    await client.get((await client.assign("Echo", [1])).id, { trace: { traceparent: TRACEPARENT } });
    const sent = server.headers.slice(-3).map((header) => header.get("traceparent") ?? "");
    assert.doesNotThrow(() => traceIdOf(sent[0] ?? ""));
    assert.notEqual(traceIdOf(sent[0] ?? ""), traceIdOf(sent[1] ?? ""));
    assert.equal(sent[2], TRACEPARENT);
  });

  it("takes the trace context from the client's provider when the call gives none", async () => {
    const traced = new EchoClient(target, {
      traceContext: () => ({ traceparent: TRACEPARENT, tracestate: "echo=1" }),
    });
    try {
      await traced.listSignatures();
      const header = server.headers.at(-1);
      assert.equal(header?.get("traceparent"), TRACEPARENT);
      assert.equal(header?.get("tracestate"), "echo=1");
    } finally {
      traced.close();
    }
  });

  it("sends the deadline and fails with DeadlineExceededError when it passes", async () => {
    server.delayMs = 2000;
    const started = Date.now();
    await assert.rejects(client.listSignatures({ timeoutMs: 100 }), DeadlineExceededError);
    assert.ok(Date.now() - started < 1500, "the client gave up at its deadline, not the server's answer");
    assert.match(server.headers.at(-1)?.get("grpc-timeout") ?? "", /^\d+[mu]$/);
  });

  it("maps INVALID_ARGUMENT with BadRequest field violations", async () => {
    server.failNext = new ConnectError("bad action", Code.InvalidArgument, undefined, [
      {
        desc: BadRequestSchema,
        value: { fieldViolations: [{ field: "action.args[1]", description: "expected INT, got STRING" }] },
      },
    ]);
    const error = await client.assign("Add", [1, "x"]).catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgumentError);
    assert.equal(error.code, Code.InvalidArgument);
    assert.equal(error.codeName, "INVALID_ARGUMENT");
    assert.deepEqual(error.fieldViolations, [{ field: "action.args[1]", description: "expected INT, got STRING" }]);
    assert.match(error.message, /^INVALID_ARGUMENT: bad action/);
  });

  it("maps RESOURCE_EXHAUSTED with RetryInfo to a retry delay", async () => {
    server.failNext = new ConnectError("queue full", Code.ResourceExhausted, undefined, [
      { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(1500) } },
    ]);
    const error = await client.assign("Echo", [1]).catch((e: unknown) => e);
    assert.ok(error instanceof ResourceExhaustedError);
    assert.equal(error.retryDelayMs, 1500);
  });

  it("maps NOT_FOUND to NotFoundError", async () => {
    await assert.rejects(client.get("nope"), NotFoundError);
  });

  it("refuses delay and notBefore together before sending anything", async () => {
    await assert.rejects(client.assign("Echo", [1], { delayMs: 1, notBefore: new Date() }), TypeError);
  });

  it("reconnects a dropped event stream and resumes after the last sequence it saw", async () => {
    const first = await client.assign("Hold", []);
    const stream = client.events({ actionIds: [first.id], afterSequence: 0n, timeoutMs: 10_000 });
    const seen: ActionEvent[] = [];
    for await (const event of stream) {
      seen.push(event);
      if (event.state === ActionState.RUNNING && seen.length === 2) {
        server.dropConnections();
        // Made by another client while the stream is down: the stream must
        // catch up with it after reconnecting.
        const other = new EchoClient(target);
        await other.cancel(first.id).finally(() => other.close());
      }
      if (event.state === ActionState.CANCELLED) break;
    }
    assert.deepEqual(
      seen.map((event) => event.state),
      [ActionState.ACCEPTED, ActionState.RUNNING, ActionState.CANCELLED],
    );
    const resumed = server.streamRequests.filter((request) => request.actionIds[0] === first.id);
    assert.ok(resumed.length >= 2, "the stream was opened again");
    assert.equal(resumed.at(-1)?.afterSequence, seen[1]?.sequence, "and resumed after the last event delivered");
  });

  it("reconnects after a retryable end message and stops at a final one", async () => {
    server.endNextStream = { reason: "server shutting down", retryable: true };
    const action = await client.assign("Echo", ["x"]);
    const states: ActionState[] = [];
    for await (const event of client.events({ actionIds: [action.id], afterSequence: 0n, timeoutMs: 5000 })) {
      states.push(event.state);
      if (event.state === ActionState.SUCCEEDED) break;
    }
    assert.deepEqual(states, [ActionState.ACCEPTED, ActionState.RUNNING, ActionState.SUCCEEDED]);

    server.endNextStream = { reason: "listener too slow", retryable: false };
    const none: ActionEvent[] = [];
    for await (const event of client.events({ timeoutMs: 5000 })) none.push(event);
    assert.deepEqual(none, []);
  });

  it("asks for the states given and for every state without them, on each reconnect too", async () => {
    const held = await client.assign("Hold", []);
    const final = [ActionState.SUCCEEDED, ActionState.FAILED, ActionState.CANCELLED];
    const opened = (): StreamRequest[] => server.streamRequests.filter((request) => request.actionIds[0] === held.id);
    const delivered = (async () => {
      const states: ActionState[] = [];
      for await (const event of client.events({ actionIds: [held.id], states: final, afterSequence: 0n, timeoutMs: 10_000 })) {
        states.push(event.state);
        if (isFinal(event.state)) break;
      }
      return states;
    })();
    await server.until(() => opened().length === 1);
    server.dropConnections();
    await server.until(() => opened().length === 2);
    await client.cancel(held.id);
    assert.deepEqual(await delivered, [ActionState.CANCELLED], "ACCEPTED and RUNNING were filtered out");
    for (const request of opened()) assert.deepEqual(request.states, final);

    for await (const _ of client.events({ actionIds: [held.id], afterSequence: 0n })) break;
    assert.deepEqual(opened().at(-1)?.states, [], "no states: every state");
  });

  it("ends a stream whose states the server refuses with InvalidArgumentError, without reconnecting", async () => {
    const before = server.streamRequests.length;
    const iterate = async (): Promise<void> => {
      for await (const _ of client.events({ states: [ActionState.UNSPECIFIED], timeoutMs: 5000 })) {
        assert.fail("no event expected");
      }
    };
    const error = await iterate().catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgumentError);
    assert.equal(error.fieldViolations[0]?.field, "states[0]");
    assert.equal(server.streamRequests.length, before + 1);
  });

  it("ends an event stream at its deadline with DeadlineExceededError", async () => {
    const iterate = async (): Promise<void> => {
      for await (const _ of client.events({ actionIds: ["quiet"], timeoutMs: 200 })) {
        assert.fail("no event expected");
      }
    };
    await assert.rejects(iterate(), DeadlineExceededError);
  });

  it("ends the server's stream as soon as the consumer stops reading", async () => {
    const action = await client.assign("Hold", []);
    for await (const event of client.events({ actionIds: [action.id], afterSequence: 0n })) {
      if (event.state === ActionState.RUNNING) break;
    }
    // The handler ends within a heartbeat of the cancel; until() waits for it.
    await server.until(() => server.openStreams === 0);
    assert.equal(server.openStreams, 0);
    await client.cancel(action.id);
  });

  it("keeps wait's inner calls within its own deadline", async () => {
    const action = await client.assign("Hold", []);
    server.delayMs = 5000;
    const started = Date.now();
    await assert.rejects(client.wait(action.id, { timeoutMs: 300 }), DeadlineExceededError);
    assert.ok(Date.now() - started < 2000, "no inner call took the client's 5 s default");
    server.delayMs = 0;
    await client.cancel(action.id);
  });

  it("waits with a stream that asks for the action's final states only", async () => {
    const action = await client.assign("Echo", ["w"]);
    const done = await client.wait(action.id, { timeoutMs: 5000 });
    assert.equal(done.state, ActionState.SUCCEEDED);
    const asked = server.streamRequests.filter((request) => request.actionIds[0] === action.id);
    assert.equal(asked.length, 1);
    assert.deepEqual(asked[0]?.states, [ActionState.SUCCEEDED, ActionState.FAILED, ActionState.CANCELLED]);
  });

  it("reconnects a server that ends every stream at once ever more slowly, until an event arrives", async () => {
    const stop = new AbortController();
    const delays: number[] = [];
    let held: string | undefined;
    class CountingClient extends EchoClient {
      protected override async pause(ms: number): Promise<void> {
        delays.push(ms);
        // The third delay journals an event, which the next call delivers.
        if (delays.length === 3) held = (await client.assign("Hold", [])).id;
        if (delays.length === 5) stop.abort(new Error("counted enough"));
        stop.signal.throwIfAborted();
      }
    }
    // maxAttempts 2: the heartbeat that opens each call keeps it from giving up.
    const counting = new CountingClient(target, { reconnect: { initialMs: 1, maxMs: 1000, multiplier: 2, jitter: 0, maxAttempts: 2 } });
    server.endEveryStream = { reason: "server shutting down", retryable: true };
    const seen: ActionState[] = [];
    try {
      const iterate = async (): Promise<void> => {
        // ACCEPTED alone: Hold's one event, whenever it runs.
        for await (const event of counting.events({ actionNames: ["Hold"], states: [ActionState.ACCEPTED], signal: stop.signal })) {
          seen.push(event.state);
        }
      };
      await assert.rejects(iterate(), /counted enough/);
    } finally {
      server.endEveryStream = undefined;
      counting.close();
      if (held !== undefined) await client.cancel(held);
    }
    assert.deepEqual(delays, [1, 2, 4, 1, 2], "heartbeats and ends do not start the delays again; the event does");
    assert.deepEqual(seen, [ActionState.ACCEPTED]);
  });

  it("gives up reconnecting after maxAttempts failures in a row", async () => {
    const lonely = new EchoClient("127.0.0.1:1", { reconnect: { initialMs: 1, maxMs: 2, maxAttempts: 2 } });
    try {
      const iterate = async (): Promise<void> => {
        for await (const _ of lonely.events({})) assert.fail("no event expected");
      };
      await assert.rejects(iterate(), UnavailableError);
    } finally {
      lonely.close();
    }
  });

  it("ties a session's events to the request that assigned their action", async () => {
    const session = client.connect();
    const a = await session.assign("Echo", ["one"], { requestId: "first" });
    const b = await session.assign("Add", [1n, 2n]);
    assert.equal(a.requestId, "first");
    const finished = new Map<string, string>();
    for await (const { requestId, event } of session.events()) {
      if (event.state === ActionState.SUCCEEDED) finished.set(event.actionId, requestId);
      if (finished.size === 2) break;
    }
    assert.equal(finished.get(a.action.id), "first");
    assert.equal(finished.get(b.action.id), b.requestId);
    await session.close();
  });

  it("subscribes a session to the states given, and fails only a subscribe with a refused state", async () => {
    const session = client.connect();
    const refused = await session.subscribe({ states: [ActionState.UNSPECIFIED] }).catch((e: unknown) => e);
    assert.ok(refused instanceof InvalidArgumentError);
    assert.equal(refused.fieldViolations[0]?.field, "subscribe.states[0]");

    const action = await client.assign("Echo", ["only the result"]);
    const { requestId } = await session.subscribe({ actionIds: [action.id], states: [ActionState.SUCCEEDED], afterSequence: 0n });
    assert.deepEqual(server.subscribeRequests.at(-1)?.states, [ActionState.SUCCEEDED]);
    for await (const item of session.events()) {
      assert.equal(item.requestId, requestId);
      assert.equal(item.event.state, ActionState.SUCCEEDED, "ACCEPTED and RUNNING were filtered out");
      assert.equal(item.event.actionId, action.id);
      break;
    }
    await session.close();
  });

  it("rejects only the failing request of a session, with its field violations", async () => {
    const session = client.connect();
    const error = await session.assign("", []).catch((e: unknown) => e);
    assert.ok(error instanceof InvalidArgumentError);
    assert.deepEqual(error.fieldViolations, [{ field: "action.name", description: "required" }]);
    const ok = await session.assign("Echo", [true]);
    assert.equal(ok.action.name, "Echo");
    const cancelled = await session.cancel(ok.action.id, "enough");
    assert.equal(cancelled.id, ok.action.id);
    await session.close();
  });
});

it("a session on a dead server fails its requests with UnavailableError", { timeout: 10_000 }, async () => {
  const lonely = new EchoClient("127.0.0.1:1");
  try {
    const session = lonely.connect();
    await assert.rejects(session.assign("Echo", [1]), UnavailableError);
    await session.done;
  } finally {
    lonely.close();
  }
});
