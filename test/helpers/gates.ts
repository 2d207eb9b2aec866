/**
 * Named gates for controlled interleavings: a handler calls `arrive(name)` once it holds its
 * loaded session and waits there until the test calls `release(name)`. The test waits for
 * `reached(name)` of every request before releasing any, so all of them have loaded before any
 * writes; releasing one at a time (and awaiting its response, which is sent after its write)
 * fixes the order in which the writes reach Redis. No sleeps, no timing assumptions.
 */

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export class Gates {
  readonly #arrived = new Map<string, Deferred>();
  readonly #open = new Map<string, Deferred>();

  #get(map: Map<string, Deferred>, name: string): Deferred {
    let d = map.get(name);
    if (!d) map.set(name, (d = deferred()));
    return d;
  }

  #closed = false;

  /** Called by the handler: note that the request got this far, then wait for the release. */
  arrive(name: string): Promise<void> {
    this.#get(this.#arrived, name).resolve();
    if (this.#closed) return Promise.resolve();
    return this.#get(this.#open, name).promise;
  }

  /** Resolves once the handler behind `name` has arrived; rejects after `timeoutMs` so a request
   *  that never gets to its handler fails the test instead of hanging it. */
  async reached(name: string, timeoutMs = 20_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`gate ${name}: the handler never got there within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.#get(this.#arrived, name).promise, expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  release(name: string): void {
    this.#get(this.#open, name).resolve();
  }

  /** Open every gate a handler waits at (used in `finally`, so a failed assertion never leaves a
   *  handler waiting). */
  releaseAll(): void {
    for (const d of this.#open.values()) d.resolve();
  }

  /** Open every gate for good: a handler arriving later passes straight through. */
  close(): void {
    this.#closed = true;
    this.releaseAll();
  }
}

/** Run `fn` `n` times; a failure names its repetition. */
export async function repeat(n: number, fn: (rep: number) => Promise<void>): Promise<void> {
  for (let rep = 0; rep < n; rep++) {
    try {
      await fn(rep);
    } catch (err) {
      if (err instanceof Error) {
        const prefix = `repetition ${rep + 1}/${n}: `;
        if (err.stack) err.stack = err.stack.replace(err.message, prefix + err.message);
        err.message = prefix + err.message;
      }
      throw err;
    }
  }
}
