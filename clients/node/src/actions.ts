/**
 * What a caller writes to describe an action, and its translation into the
 * contract's `Action`. Every option left out stays unset on the wire, so the
 * server applies its default; an explicit 0 is sent as 0 and means 0.
 */

import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  type Action,
  ActionOptionsSchema,
  ActionSchema,
  ActionState,
  type RetryPolicy,
  RetryPolicySchema,
} from "./gen/echo/v1/action_pb.js";
import type { TraceContext } from "./trace.js";
import { type Arg, toValue } from "./values.js";

/** How failed attempts are retried; see RetryPolicy in the contract. */
export interface RetryPolicyInit {
  /** Delay before the first retry. Server default 1 s. */
  initialIntervalMs?: number;
  /** Each further delay is the last times this. Server default 2. */
  backoffCoefficient?: number;
  /** Upper bound of one delay. Server default 100 x initialIntervalMs. */
  maximumIntervalMs?: number;
  /** Attempts in all, the first included; 0 is unlimited. Server default 3. */
  maximumAttempts?: number;
  /** Handler error types that are never retried. */
  nonRetryableErrorTypes?: string[];
  /** Spread of each delay, between 0 and 1. Server default 0.2. */
  jitter?: number;
}

/** When and how an action runs. Every field is optional. */
export interface ActionOptionsInit {
  /** Run no earlier than this long after acceptance. Excludes `notBefore`. */
  delayMs?: number;
  /** Run no earlier than this time. Excludes `delayMs`. */
  notBefore?: Date;
  /** Higher runs first among due actions; may be negative. Server default 0. */
  priority?: number;
  /** Limit of one attempt. */
  attemptTimeoutMs?: number;
  /** No attempt starts after this time, and a running one is cancelled. */
  deadline?: Date;
  retry?: RetryPolicyInit;
  /** A repeat assign with the same key returns the first action. */
  idempotencyKey?: string;
  /** Assigned when this action succeeds. */
  next?: ActionInit;
  /** Free-form metadata; the key "hooks" names hooks, comma separated. */
  metadata?: Record<string, string>;
  /**
   * The trace the action's own spans continue. Unset: the server takes the
   * call's traceparent header.
   */
  traceContext?: TraceContext;
}

/** One action to assign. */
export interface ActionInit extends ActionOptionsInit {
  /** The signature's name. */
  name: string;
  /** Positional arguments; see `toValue` for how each is sent. */
  args?: readonly Arg[];
}

/** The states the contract marks final; `wait` asks for these alone. */
export const FINAL_STATES: readonly ActionState[] = Object.freeze([ActionState.SUCCEEDED, ActionState.FAILED, ActionState.CANCELLED]);

const FINAL = new Set(FINAL_STATES);

/** True for SUCCEEDED, FAILED and CANCELLED: the action will not change again. */
export function isFinal(state: ActionState): boolean {
  return FINAL.has(state);
}

function retryPolicy(init: RetryPolicyInit): RetryPolicy {
  return create(RetryPolicySchema, {
    initialInterval: init.initialIntervalMs === undefined ? undefined : durationFromMs(init.initialIntervalMs),
    backoffCoefficient: init.backoffCoefficient,
    maximumInterval: init.maximumIntervalMs === undefined ? undefined : durationFromMs(init.maximumIntervalMs),
    maximumAttempts: init.maximumAttempts,
    nonRetryableErrorTypes: init.nonRetryableErrorTypes ?? [],
    jitter: init.jitter,
  });
}

function schedule(init: ActionOptionsInit) {
  if (init.delayMs !== undefined && init.notBefore !== undefined) {
    throw new TypeError("give delayMs or notBefore, not both");
  }
  if (init.delayMs !== undefined) return { case: "delay" as const, value: durationFromMs(init.delayMs) };
  if (init.notBefore !== undefined) return { case: "notBefore" as const, value: timestampFromDate(init.notBefore) };
  return { case: undefined };
}

/** The contract's `Action` for `init`. */
export function toAction(init: ActionInit): Action {
  const traceContext: Record<string, string> = {};
  if (init.traceContext !== undefined) {
    traceContext["traceparent"] = init.traceContext.traceparent;
    if (init.traceContext.tracestate) traceContext["tracestate"] = init.traceContext.tracestate;
  }
  return create(ActionSchema, {
    name: init.name,
    args: (init.args ?? []).map(toValue),
    options: create(ActionOptionsSchema, {
      schedule: schedule(init),
      priority: init.priority,
      attemptTimeout: init.attemptTimeoutMs === undefined ? undefined : durationFromMs(init.attemptTimeoutMs),
      deadline: init.deadline === undefined ? undefined : timestampFromDate(init.deadline),
      retryPolicy: init.retry === undefined ? undefined : retryPolicy(init.retry),
      idempotencyKey: init.idempotencyKey ?? "",
      nextAction: init.next === undefined ? undefined : toAction(init.next),
    }),
    metadata: { ...init.metadata },
    traceContext,
  });
}
