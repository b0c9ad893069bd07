/**
 * TypeScript client for Echo. Start with `new EchoClient("host:port")`; see
 * the README for a tour.
 */

export { type ActionInit, type ActionOptionsInit, isFinal, type RetryPolicyInit, toAction } from "./actions.js";
export type { BackoffOptions } from "./backoff.js";
export {
  type AssignOptions,
  type CallOptions,
  type ClientOptions,
  EchoClient,
  type EventFilter,
  type WaitOptions,
} from "./client.js";
export {
  ActionFailedError,
  CancelledError,
  Code,
  codeName,
  DeadlineExceededError,
  EchoError,
  FailedPreconditionError,
  type FieldViolation,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from "./errors.js";
export {
  type Action,
  type ActionError,
  type ActionEvent,
  type ActionSignature,
  ActionState,
  ErrorKind,
  ValueType,
} from "./gen/echo/v1/action_pb.js";
export { parseJson, stringifyJson } from "./json.js";
export type { Session, SessionAssigned, SessionEvent, SessionOptions, SubscribeFilter } from "./session.js";
export { isTraceparent, newTraceparent, type TraceContext, traceIdOf } from "./trace.js";
export { type Arg, Double, double, fromValue, Json, type Result, toValue } from "./values.js";
