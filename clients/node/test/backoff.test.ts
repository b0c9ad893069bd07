import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { backoffDelayMs, resolveBackoff, sleep } from "../src/backoff.js";

describe("backoff", () => {
  it("grows by the multiplier up to the cap", () => {
    const options = resolveBackoff({ initialMs: 100, maxMs: 1000, multiplier: 3, jitter: 0 });
    assert.deepEqual(
      [1, 2, 3, 4].map((n) => backoffDelayMs(n, options)),
      [100, 300, 900, 1000],
    );
  });

  it("spreads each delay within the jitter band", () => {
    const options = resolveBackoff({ initialMs: 1000, jitter: 0.2 });
    assert.equal(backoffDelayMs(1, options, () => 0), 800);
    assert.equal(backoffDelayMs(1, options, () => 1), 1200);
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelayMs(1, options)));
    assert.ok(seen.size > 1, "two clients reconnecting together should not wait alike");
  });

  it("refuses nonsense settings", () => {
    assert.throws(() => resolveBackoff({ jitter: 2 }), RangeError);
    assert.throws(() => resolveBackoff({ multiplier: 0.5 }), RangeError);
    assert.throws(() => resolveBackoff({ initialMs: -1 }), RangeError);
  });

  it("stops sleeping when its signal aborts", async () => {
    const controller = new AbortController();
    const slept = sleep(60_000, controller.signal);
    controller.abort(new Error("stop"));
    await assert.rejects(slept, /stop/);
  });
});
