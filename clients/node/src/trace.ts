/**
 * W3C trace context (https://www.w3.org/TR/trace-context/). Every call carries
 * a `traceparent`: the caller's own when it gives one, else a fresh trace, so
 * that the server's spans for an action always join some trace the caller can
 * find again (`traceIdOf`).
 */

import { randomBytes } from "node:crypto";

/** The two headers of a W3C trace context. */
export interface TraceContext {
  traceparent: string;
  tracestate?: string;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ZEROS = /^0+$/;

/** A sampled traceparent with a new random trace id and span id. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
}

/** True for a version-00 traceparent with non-zero ids. */
export function isTraceparent(value: string): boolean {
  const match = TRACEPARENT.exec(value);
  return match !== null && !ZEROS.test(match[1] ?? "") && !ZEROS.test(match[2] ?? "");
}

/** The 32-hex-digit trace id of a traceparent; throws on a malformed one. */
export function traceIdOf(traceparent: string): string {
  if (!isTraceparent(traceparent)) throw new TypeError(`bad traceparent ${JSON.stringify(traceparent)}`);
  return traceparent.slice(3, 35);
}
