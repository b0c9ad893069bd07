/**
 * Plays the interop scenarios (tests/interop/scenarios.json) with this
 * client.
 *
 *     node --import tsx interop/runner.ts --target HOST:PORT [--only NAME ...]
 *
 * Prints one JSON line per scenario, {"scenario", "ok", "detail"}, then
 * "N passed, N failed"; exits 1 when any failed. The Python and Go runners
 * play the same file the same way.
 */

import { readFile } from "node:fs/promises";
import * as net from "node:net";
import { parseArgs } from "node:util";
import {
  type Action,
  type ActionEvent,
  type ActionOptionsInit,
  ActionState,
  type Arg,
  codeName,
  DeadlineExceededError,
  Double,
  double,
  EchoClient,
  EchoError,
  fromValue,
  isFinal,
  Json,
  parseJson,
  type Result,
} from "../src/index.js";

type Typed = Record<string, string | number | boolean>;
// The scenario file is data; the runner checks what it reads as it goes.
type Scenario = any;

const WAIT_MS = 20_000;

class Mismatch extends Error {}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Mismatch(message);
}

// -- values -------------------------------------------------------------------

function arg(spec: Typed, index = 0): Arg {
  const [[kind, value]] = Object.entries(spec) as [[string, string | number | boolean]];
  switch (kind) {
    case "int":
      return BigInt(value as string);
    case "int_index":
      return BigInt(index) + BigInt(value as number);
    case "double":
      return double(value as number);
    case "string":
    case "bool":
      return value as string | boolean;
    case "bytes":
      return new Uint8Array(Buffer.from(value as string, "base64"));
    case "json":
      return new Json(value as string);
  }
  throw new Error(`unknown value kind ${kind}`);
}

/** The expected result, as `fromValue` would give it. */
function expected(spec: Typed, index = 0): Result {
  const value = arg(spec, index);
  return value instanceof Double ? value.value : (value as Result);
}

/** Equal, and of the same type: an int64 (bigint) is never a double (number). */
function same(got: unknown, want: unknown): boolean {
  if (got instanceof Uint8Array && want instanceof Uint8Array) {
    return Buffer.from(got).equals(Buffer.from(want));
  }
  if (Array.isArray(want)) {
    return Array.isArray(got) && got.length === want.length && want.every((w, i) => same(got[i], w));
  }
  if (want !== null && typeof want === "object") {
    if (got === null || typeof got !== "object") return false;
    const keys = Object.keys(want);
    return keys.length === Object.keys(got).length && keys.every((k) => same((got as Record<string, unknown>)[k], (want as Record<string, unknown>)[k]));
  }
  return typeof got === typeof want && (got === want || (Number.isNaN(got) && Number.isNaN(want)));
}

function options(spec: Scenario | undefined): ActionOptionsInit {
  if (spec === undefined) return {};
  const retry = spec.retry;
  return {
    delayMs: spec.delay_ms,
    priority: spec.priority,
    idempotencyKey: spec.idempotency_key,
    retry:
      retry === undefined
        ? undefined
        : {
            initialIntervalMs: retry.initial_interval_ms,
            backoffCoefficient: retry.backoff_coefficient,
            maximumIntervalMs: retry.maximum_interval_ms,
            maximumAttempts: retry.maximum_attempts,
            jitter: retry.jitter,
          },
  };
}

function stateOf(name: string): ActionState {
  const state = ActionState[name as keyof typeof ActionState];
  if (state === undefined) throw new Error(`unknown state ${name}`);
  return state;
}

// -- a TCP proxy that can cut connections --------------------------------------

/**
 * Forwards 127.0.0.1:<port> to the server. `cut` destroys every open
 * connection; during an outage new connections are closed at once.
 */
class Proxy {
  accepted = 0;
  private readonly sockets = new Set<net.Socket>();
  private refuseUntil = 0;
  private readonly server: net.Server;

  constructor(private readonly target: string) {
    this.server = net.createServer((client) => this.accept(client));
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  private accept(client: net.Socket): void {
    if (Date.now() < this.refuseUntil) {
      client.destroy();
      return;
    }
    this.accepted += 1;
    const colon = this.target.lastIndexOf(":");
    const upstream = net.connect(Number(this.target.slice(colon + 1)), this.target.slice(0, colon));
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  }

  cut(outageMs: number): void {
    this.refuseUntil = Date.now() + outageMs;
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.cut(0);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

// -- the scenario kinds ----------------------------------------------------------

class Runner {
  constructor(
    private readonly client: EchoClient,
    private readonly target: string,
  ) {}

  private async eventsOf(ids: string[], count: number, client: EchoClient = this.client): Promise<ActionEvent[]> {
    const out: ActionEvent[] = [];
    const finished = new Set<string>();
    for await (const event of client.events({ actionIds: ids, afterSequence: 0n, timeoutMs: WAIT_MS })) {
      out.push(event);
      if (isFinal(event.state)) finished.add(event.actionId);
      if (finished.size === count) break;
    }
    return out;
  }

  private checkAction(action: Action, expect: Scenario, label: string): void {
    const state = stateOf(expect.state);
    check(action.state === state, `${label}: state ${ActionState[action.state]}, want ${expect.state}`);
    if (expect.result !== undefined) {
      const got = fromValue(action.result);
      check(same(got, expected(expect.result)), `${label}: result ${String(got)}`);
    }
    if (expect.attempt !== undefined) check(action.attempt === expect.attempt, `${label}: attempt ${action.attempt}`);
    if (expect.error_type !== undefined) check(action.error?.type === expect.error_type, `${label}: error ${action.error?.type}`);
    if (expect.error_message !== undefined) {
      check(action.error?.message === expect.error_message, `${label}: error ${action.error?.message}`);
    }
  }

  async run(scenario: Scenario): Promise<string> {
    for (const [i, c] of (scenario.cases as Scenario[]).entries()) {
      const label = `case ${i} (${c.action})`;
      const started = performance.now();
      const { id } = await this.client.assign(c.action, c.args.map((a: Typed) => arg(a)), options(c.options));
      const action = await this.client.wait(id, { timeoutMs: WAIT_MS });
      const elapsedMs = performance.now() - started;
      this.checkAction(action, c.expect, label);
      if (c.expect.min_elapsed_ms !== undefined) {
        check(elapsedMs >= c.expect.min_elapsed_ms, `${label}: done after ${elapsedMs.toFixed(0)} ms`);
      }
      if (c.expect.count_states !== undefined || c.expect.retrying_error_type !== undefined) {
        const events = await this.eventsOf([id], 1);
        for (const [name, count] of Object.entries(c.expect.count_states ?? {})) {
          const seen = events.filter((e) => e.state === stateOf(name)).length;
          check(seen === count, `${label}: ${seen} ${name} events`);
        }
        if (c.expect.retrying_error_type !== undefined) {
          const types = new Set(events.filter((e) => e.state === ActionState.RETRYING).map((e) => e.error?.type));
          check(types.size === 1 && types.has(c.expect.retrying_error_type), `${label}: retry error types ${[...types]}`);
        }
      }
    }
    return `${scenario.cases.length} cases`;
  }

  async json(scenario: Scenario): Promise<string> {
    for (const text of scenario.cases as string[]) {
      const { id } = await this.client.assign("EchoJson", [new Json(text)]);
      const action = await this.client.wait(id, { timeoutMs: WAIT_MS });
      check(action.state === ActionState.SUCCEEDED, `${text}: ${ActionState[action.state]}`);
      const result = fromValue(action.result);
      check(result instanceof Json, `${text}: came back as ${typeof result}`);
      check(same(result.parse(), parseJson(text)), `${text}: came back ${result.text}`);
    }
    return `${scenario.cases.length} documents`;
  }

  async bulk(scenario: Scenario): Promise<string> {
    const count: number = scenario.count;
    const actions = await this.client.assignMany(
      Array.from({ length: count }, (_, i) => ({ name: scenario.action, args: scenario.args.map((a: Typed) => arg(a, i)) })),
    );
    check(actions.length === count, `${actions.length} results for ${count}`);
    const ids = actions.map((a) => a.id);
    check(new Set(ids).size === count, "ids are not unique");
    const finals = new Map<string, ActionEvent>();
    for (const event of await this.eventsOf(ids, count)) if (isFinal(event.state)) finals.set(event.actionId, event);
    for (const [i, id] of ids.entries()) {
      const event = finals.get(id);
      const got = fromValue(event?.result);
      check(event?.state === ActionState.SUCCEEDED && same(got, expected(scenario.result, i)), `action ${i}: ${String(got)}`);
    }
    return `${count} actions`;
  }

  async reject(scenario: Scenario): Promise<string> {
    for (const [i, c] of (scenario.cases as Scenario[]).entries()) {
      const label = `case ${i} (${c.op} ${c.action ?? c.id})`;
      let error: unknown;
      try {
        if (c.op === "assign") await this.client.assign(c.action, c.args.map((a: Typed) => arg(a)), options(c.options));
        else if (c.op === "get") await this.client.get(c.id);
        else await this.client.cancel(c.id);
      } catch (e) {
        error = e;
      }
      check(error instanceof EchoError, `${label}: ${error === undefined ? "accepted" : String(error)}`);
      check(codeName(error.code) === c.code, `${label}: ${error.codeName}, want ${c.code}`);
      if (c.field !== undefined) {
        const fields = error.fieldViolations.map((v) => v.field);
        check(fields.includes(c.field), `${label}: fields ${fields}`);
      }
    }
    return `${scenario.cases.length} cases`;
  }

  async cancel(scenario: Scenario): Promise<string> {
    const { id } = await this.client.assign(scenario.action, scenario.args.map((a: Typed) => arg(a)));
    const started = performance.now();
    for await (const event of this.client.events({ actionIds: [id], afterSequence: 0n, timeoutMs: WAIT_MS })) {
      if (event.state === ActionState.RUNNING) break;
    }
    await this.client.cancel(id, "interop");
    const action = await this.client.wait(id, { timeoutMs: WAIT_MS });
    const elapsedMs = performance.now() - started;
    check(action.state === ActionState.CANCELLED, `state ${ActionState[action.state]}`);
    check(elapsedMs < scenario.within_ms, `cancelled after ${elapsedMs} ms`);
    return `cancelled after ${elapsedMs.toFixed(0)} ms`;
  }

  async deadline(scenario: Scenario): Promise<string> {
    const { id } = await this.client.assign(scenario.action, scenario.args.map((a: Typed) => arg(a)));
    const started = performance.now();
    try {
      const error = await this.client.wait(id, { timeoutMs: scenario.wait_ms }).then(
        () => undefined,
        (e: unknown) => e,
      );
      check(error instanceof DeadlineExceededError, `wait ended with ${String(error)}`);
    } finally {
      await this.client.cancel(id, "interop cleanup");
    }
    const elapsedMs = performance.now() - started;
    check(elapsedMs < scenario.within_ms, `gave up after ${elapsedMs} ms`);
    return `gave up after ${elapsedMs.toFixed(0)} ms`;
  }

  async resume(scenario: Scenario): Promise<string> {
    const ids: string[] = [];
    for (let i = 0; i < scenario.immediate; i++) ids.push((await this.client.assign(scenario.action, [`now ${i}`])).id);
    for (let i = 0; i < scenario.delayed; i++) {
      ids.push((await this.client.assign(scenario.action, [`later ${i}`], { delayMs: scenario.delay_ms })).id);
    }
    const proxy = new Proxy(this.target);
    const viaProxy = new EchoClient(await proxy.start());
    const seen: ActionEvent[] = [];
    try {
      const immediate = new Set(ids.slice(0, scenario.immediate));
      const finished = new Set<string>();
      let cut = false;
      for await (const event of viaProxy.events({ actionIds: ids, afterSequence: 0n, timeoutMs: WAIT_MS })) {
        seen.push(event);
        if (isFinal(event.state)) finished.add(event.actionId);
        if (!cut && [...immediate].every((id) => finished.has(id))) {
          proxy.cut(scenario.outage_ms);
          cut = true;
        }
        if (finished.size === ids.length) break;
      }
    } finally {
      viaProxy.close();
      await proxy.close();
    }
    const truth = (await this.eventsOf(ids, ids.length)).map((e) => e.sequence);
    const got = seen.map((e) => e.sequence);
    check(got.every((s, i) => i === 0 || s > (got[i - 1] as bigint)), `sequences out of order or repeated: ${got}`);
    check(got.join() === truth.join(), `saw ${got}, journal has ${truth}`);
    check(proxy.accepted >= 2, `${proxy.accepted} connections: never reconnected`);
    return `${got.length} events over ${proxy.accepted} connections`;
  }

  async stateFilter(scenario: Scenario): Promise<string> {
    const { id } = await this.client.assign(scenario.action, scenario.args.map((a: Typed) => arg(a)));
    const states = (scenario.states as string[]).map(stateOf);
    const want = scenario.events as Scenario[];
    const seen: ActionEvent[] = [];
    for await (const event of this.client.events({ actionIds: [id], states, afterSequence: 0n, timeoutMs: WAIT_MS })) {
      seen.push(event);
      if (seen.length === want.length) break;
    }
    // Every event of the action, now that it is final: those in the states
    // asked for are what the stream had to deliver, no more.
    const journal = await this.eventsOf([id], 1);
    const matching = journal.filter((e) => states.includes(e.state)).map((e) => e.sequence);
    const got = seen.map((e) => e.sequence);
    check(got.join() === matching.join(), `saw ${got}, the journal's matching events are ${matching}`);
    check(journal.length > seen.length, `the journal has only ${journal.length} events`);
    for (const [i, expect] of want.entries()) {
      const event = seen[i];
      check(event?.state === stateOf(expect.state), `event ${i}: ${event && ActionState[event.state]}, want ${expect.state}`);
      if (expect.result !== undefined) {
        const result = fromValue(event.result);
        check(same(result, expected(expect.result)), `event ${i}: ${String(result)}`);
      }
    }
    return `${seen.length} of the action's ${journal.length} events`;
  }

  async session(scenario: Scenario): Promise<string> {
    const session = this.client.connect();
    try {
      const owners = new Map<string, string>();
      for (const item of scenario.assigns) {
        const assigned = await session.assign(item.action, item.args.map((a: Typed) => arg(a)), { requestId: item.request_id });
        check(assigned.requestId === item.request_id, `answered under ${assigned.requestId}`);
        owners.set(assigned.action.id, item.request_id);
      }
      const bad = scenario.bad;
      const error = await session.assign(bad.action, bad.args.map((a: Typed) => arg(a)), { requestId: bad.request_id }).then(
        () => undefined,
        (e: unknown) => e,
      );
      check(error instanceof EchoError && error.codeName === bad.code, `bad request: ${String(error)}`);
      const fields = error.fieldViolations.map((v) => v.field);
      check(fields.includes(bad.field), `bad request: fields ${fields}`);
      const results = new Map<string, Result>();
      const deadline = Date.now() + WAIT_MS;
      for await (const { requestId, event } of session.events()) {
        check(Date.now() < deadline, "the session took too long");
        check(owners.get(event.actionId) === requestId, `event of ${event.actionId} under ${requestId}`);
        if (isFinal(event.state)) results.set(requestId, fromValue(event.result));
        if (results.size === owners.size) break;
      }
      for (const item of scenario.assigns) {
        const got = results.get(item.request_id);
        check(same(got, expected(item.result)), `${item.request_id}: ${String(got)}`);
      }
      return `${owners.size} actions, one refused`;
    } finally {
      await session.close();
    }
  }

  async trace(scenario: Scenario): Promise<string> {
    const traceparent: string = scenario.traceparent;
    const result = await this.client.run("TraceId", [], { trace: { traceparent }, timeoutMs: WAIT_MS });
    const traceId = traceparent.split("-")[1];
    check(result === traceId, `ran in trace ${String(result)}`);
    return `ran in trace ${traceId}`;
  }
}

const KINDS: Record<string, (runner: Runner, scenario: Scenario) => Promise<string>> = {
  run: (r, s) => r.run(s),
  json: (r, s) => r.json(s),
  bulk: (r, s) => r.bulk(s),
  reject: (r, s) => r.reject(s),
  cancel: (r, s) => r.cancel(s),
  deadline: (r, s) => r.deadline(s),
  resume: (r, s) => r.resume(s),
  state_filter: (r, s) => r.stateFilter(s),
  session: (r, s) => r.session(s),
  trace: (r, s) => r.trace(s),
};

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: "string" },
      scenarios: { type: "string", default: new URL("../../../tests/interop/scenarios.json", import.meta.url).pathname },
      only: { type: "string", multiple: true, default: [] },
    },
  });
  if (values.target === undefined) throw new Error("--target HOST:PORT is required");
  const { scenarios } = JSON.parse(await readFile(values.scenarios, "utf8")) as { scenarios: Scenario[] };
  const client = new EchoClient(values.target, { timeoutMs: 10_000 });
  const runner = new Runner(client, values.target);
  let passed = 0;
  let failed = 0;
  try {
    for (const scenario of scenarios) {
      if (values.only.length > 0 && !values.only.includes(scenario.name)) continue;
      const kind = KINDS[scenario.kind];
      let line: { scenario: string; ok: boolean; detail: string };
      try {
        if (kind === undefined) throw new Error(`unknown kind ${scenario.kind}`);
        line = { scenario: scenario.name, ok: true, detail: await kind(runner, scenario) };
        passed += 1;
      } catch (error) {
        const detail = error instanceof EchoError ? `${error.name}: ${error.message}` : String(error);
        line = { scenario: scenario.name, ok: false, detail };
        failed += 1;
      }
      process.stdout.write(`${JSON.stringify(line)}\n`);
    }
  } finally {
    client.close();
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main();
