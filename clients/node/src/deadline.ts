/**
 * Deadlines of streaming calls, kept by the client itself.
 *
 * Connect's own `timeoutMs` leaves its timer running when a consumer stops
 * reading a server stream early, which holds the process open until the
 * deadline passes. So a stream's deadline is a timer of ours, cleared when the
 * call ends; the server still learns it from the `grpc-timeout` header.
 */

import { Code, ConnectError } from "@connectrpc/connect";

/** The `grpc-timeout` value for `ms`: at most eight digits and a unit. */
export function grpcTimeout(ms: number): string {
  const units: [string, number][] = [["m", 1], ["S", 1000], ["M", 60_000], ["H", 3_600_000]];
  for (const [unit, size] of units) {
    const amount = Math.ceil(ms / size);
    if (amount < 100_000_000) return `${amount}${unit}`;
  }
  return "99999999H";
}

/** A signal that aborts with DEADLINE_EXCEEDED after `timeoutMs` (0: never). */
export class StreamDeadline {
  readonly signal: AbortSignal;
  readonly headers: Record<string, string> = {};
  private readonly controller = new AbortController();
  private readonly timer: ReturnType<typeof setTimeout> | undefined;

  constructor(timeoutMs: number, signal?: AbortSignal) {
    this.signal = signal === undefined ? this.controller.signal : AbortSignal.any([signal, this.controller.signal]);
    if (timeoutMs > 0) {
      this.headers["grpc-timeout"] = grpcTimeout(timeoutMs);
      this.timer = setTimeout(
        () => this.controller.abort(new ConnectError("the deadline passed", Code.DeadlineExceeded)),
        timeoutMs,
      );
    }
  }

  /** Ends the call, if still open, and stops the timer. */
  dispose(): void {
    clearTimeout(this.timer);
    this.controller.abort();
  }
}
