/**
 * An unbounded single-consumer async queue: the request side of a Connect
 * session and the hand-over of its events. Producers push from any callback;
 * the one consumer awaits. After `close` the consumer drains what is left and
 * then ends; after `fail` it gets the error once the queue is drained.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private waiting: ((result: IteratorResult<T>) => void) | undefined;
  private rejectWaiting: ((error: unknown) => void) | undefined;
  private closed = false;
  private error: unknown = undefined;
  private failed = false;

  get isClosed(): boolean {
    return this.closed;
  }

  push(item: T): void {
    if (this.closed) throw new Error("queue is closed");
    const resolve = this.waiting;
    if (resolve !== undefined) {
      this.waiting = this.rejectWaiting = undefined;
      resolve({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const resolve = this.waiting;
    this.waiting = this.rejectWaiting = undefined;
    resolve?.({ value: undefined, done: true });
  }

  fail(error: unknown): void {
    if (this.closed) return;
    this.error = error;
    this.failed = true;
    this.closed = true;
    const reject = this.rejectWaiting;
    this.waiting = this.rejectWaiting = undefined;
    reject?.(error);
  }

  next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) return Promise.resolve({ value: this.items.shift() as T, done: false });
    if (this.failed) return Promise.reject(this.error);
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    if (this.waiting !== undefined) return Promise.reject(new Error("queue has one consumer only"));
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.rejectWaiting = reject;
    });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      // A consumer that stops early, or fails, closes the queue.
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
      throw: (error: unknown) => {
        this.fail(error);
        return Promise.reject(error);
      },
    };
  }
}
