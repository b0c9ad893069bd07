/**
 * Errors. A failed call becomes an `EchoError` whose class follows the gRPC
 * status code, with the google.rpc details the server attached to it:
 * BadRequest field violations and RetryInfo's delay. A Connect session's
 * per-request errors carry the same fields and map to the same classes.
 *
 *     EchoError                      any status code without a class below
 *     ├── CancelledError             CANCELLED
 *     ├── InvalidArgumentError       INVALID_ARGUMENT, with fieldViolations
 *     ├── DeadlineExceededError      DEADLINE_EXCEEDED
 *     ├── NotFoundError              NOT_FOUND
 *     ├── PermissionDeniedError      PERMISSION_DENIED
 *     ├── ResourceExhaustedError     RESOURCE_EXHAUSTED, with retryDelayMs
 *     ├── FailedPreconditionError    FAILED_PRECONDITION
 *     ├── UnavailableError           UNAVAILABLE, with retryDelayMs
 *     └── UnauthenticatedError       UNAUTHENTICATED
 *
 * `ActionFailedError` is apart: the call worked, the action did not.
 */

import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Action, ActionError } from "./gen/echo/v1/action_pb.js";
import { ActionState, ErrorKind } from "./gen/echo/v1/action_pb.js";
import type { RequestError } from "./gen/echo/v1/echo_service_pb.js";
import { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export { Code };

/** One bad field of a request, e.g. `action.args[1]`. */
export interface FieldViolation {
  field: string;
  description: string;
}

interface Detail {
  fieldViolations?: readonly FieldViolation[];
  retryDelayMs?: number | undefined;
  cause?: unknown;
}

/** The canonical name of a status code, e.g. "INVALID_ARGUMENT". */
export function codeName(code: Code): string {
  if (code === Code.Canceled) return "CANCELLED";
  const name = Code[code];
  return name === undefined ? `CODE_${code}` : name.replace(/(?<=[a-z])(?=[A-Z])/g, "_").toUpperCase();
}

/** A call or a session request failed with a gRPC status code. */
export class EchoError extends Error {
  override name = "EchoError";
  /** The status code. */
  readonly code: Code;
  /** The offending fields, for INVALID_ARGUMENT; empty otherwise. */
  readonly fieldViolations: readonly FieldViolation[];
  /** How long to wait before trying again, when the server said. */
  readonly retryDelayMs: number | undefined;

  constructor(code: Code, message: string, detail: Detail = {}) {
    super(`${codeName(code)}: ${message}`, { cause: detail.cause });
    this.code = code;
    this.fieldViolations = detail.fieldViolations ?? [];
    this.retryDelayMs = detail.retryDelayMs;
  }

  /** The status code's canonical name, e.g. "NOT_FOUND". */
  get codeName(): string {
    return codeName(this.code);
  }
}

export class CancelledError extends EchoError {
  override name = "CancelledError";
}
export class InvalidArgumentError extends EchoError {
  override name = "InvalidArgumentError";
}
export class DeadlineExceededError extends EchoError {
  override name = "DeadlineExceededError";
}
export class NotFoundError extends EchoError {
  override name = "NotFoundError";
}
export class PermissionDeniedError extends EchoError {
  override name = "PermissionDeniedError";
}
export class ResourceExhaustedError extends EchoError {
  override name = "ResourceExhaustedError";
}
export class FailedPreconditionError extends EchoError {
  override name = "FailedPreconditionError";
}
export class UnavailableError extends EchoError {
  override name = "UnavailableError";
}
export class UnauthenticatedError extends EchoError {
  override name = "UnauthenticatedError";
}

const CLASSES: ReadonlyMap<Code, typeof EchoError> = new Map<Code, typeof EchoError>([
  [Code.Canceled, CancelledError],
  [Code.InvalidArgument, InvalidArgumentError],
  [Code.DeadlineExceeded, DeadlineExceededError],
  [Code.NotFound, NotFoundError],
  [Code.PermissionDenied, PermissionDeniedError],
  [Code.ResourceExhausted, ResourceExhaustedError],
  [Code.FailedPrecondition, FailedPreconditionError],
  [Code.Unavailable, UnavailableError],
  [Code.Unauthenticated, UnauthenticatedError],
]);

/** The error of class matching `code`. */
export function echoError(code: Code, message: string, detail: Detail = {}): EchoError {
  const Class = CLASSES.get(code) ?? EchoError;
  return new Class(code, message, detail);
}

/** Maps anything a call threw to an `EchoError`, keeping it as the cause. */
export function toEchoError(error: unknown): EchoError {
  if (error instanceof EchoError) return error;
  const connect = ConnectError.from(error);
  const fieldViolations = connect
    .findDetails(BadRequestSchema)
    .flatMap((badRequest) => badRequest.fieldViolations)
    .map(({ field, description }) => ({ field, description }));
  const retry = connect.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return echoError(connect.code, connect.rawMessage, {
    fieldViolations,
    retryDelayMs: retry === undefined ? undefined : durationMs(retry),
    cause: error,
  });
}

/** Maps a Connect session's per-request error. */
export function fromRequestError(error: RequestError): EchoError {
  return echoError(error.code as Code, error.message, {
    fieldViolations: error.fieldViolations.map(({ field, description }) => ({ field, description })),
    retryDelayMs: error.retryDelay === undefined ? undefined : durationMs(error.retryDelay),
  });
}

/** The action finished without success; `action` is its final state. */
export class ActionFailedError extends Error {
  override name = "ActionFailedError";
  /** The handler's own error type, e.g. "ValueError"; empty when cancelled without one. */
  readonly type: string;
  /** Where the error came from. */
  readonly kind: ErrorKind;

  constructor(readonly action: Action) {
    const error: ActionError | undefined = action.error;
    const state = ActionState[action.state] ?? String(action.state);
    super(`action ${action.id} (${action.name}) ended ${state}: ${error?.type ?? ""}: ${error?.message ?? ""}`);
    this.type = error?.type ?? "";
    this.kind = error?.kind ?? ErrorKind.UNSPECIFIED;
  }
}
