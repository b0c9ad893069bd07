/** Jittered exponential backoff, for reconnecting a broken stream. */

/**
 * How reconnects are spaced. Every field is optional. The delay grows with
 * each reconnect since the stream last delivered an event, so a server that
 * ends every stream at once is asked ever more slowly; only an event starts
 * it from `initialMs` again.
 */
export interface BackoffOptions {
  /** Delay before the first reconnect. Default 100 ms. */
  initialMs?: number;
  /** Upper bound of one delay. Default 5000 ms. */
  maxMs?: number;
  /** Each further delay is the last times this. Default 2. */
  multiplier?: number;
  /** Each delay is scaled by a random factor in [1 - jitter, 1 + jitter]. Default 0.2. */
  jitter?: number;
  /**
   * Reconnects in a row, without a heartbeat or an event in between, before
   * giving up. Default 10. Either starts counting again: the server is
   * there, so a quiet stream cut now and then is never given up on.
   */
  maxAttempts?: number;
}

export type ResolvedBackoff = Required<BackoffOptions>;

export function resolveBackoff(options: BackoffOptions = {}): ResolvedBackoff {
  const resolved = {
    initialMs: options.initialMs ?? 100,
    maxMs: options.maxMs ?? 5000,
    multiplier: options.multiplier ?? 2,
    jitter: options.jitter ?? 0.2,
    maxAttempts: options.maxAttempts ?? 10,
  };
  if (resolved.initialMs < 0 || resolved.maxMs < 0) throw new RangeError("backoff delays must not be negative");
  if (resolved.multiplier < 1) throw new RangeError("backoff multiplier must be at least 1");
  if (resolved.jitter < 0 || resolved.jitter > 1) throw new RangeError("backoff jitter must be within [0, 1]");
  return resolved;
}

/** The delay before reconnect number `attempt` (1 for the first). */
export function backoffDelayMs(attempt: number, options: ResolvedBackoff, random: () => number = Math.random): number {
  const base = Math.min(options.maxMs, options.initialMs * options.multiplier ** (attempt - 1));
  return Math.max(0, base * (1 + options.jitter * (2 * random() - 1)));
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    signal?.throwIfAborted();
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
