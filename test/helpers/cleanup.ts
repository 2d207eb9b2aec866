/**
 * What a test opened and must close even when one of its assertions fails first. An ioredis client
 * left open keeps reconnecting once the file's redis-server is stopped, so the file would never
 * exit: the helpers that open apps register their close here, and the files' after hooks call
 * `closeOpened()`. A test that closes its app itself closes it once; the hook skips it.
 */
const opened = new Set<() => Promise<void>>();

/** Register `close`; returns it made idempotent (the second call awaits the first). */
export function closeable(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const once = () => {
    opened.delete(once);
    closing ??= close();
    return closing;
  };
  opened.add(once);
  return once;
}

/** Close everything registered and not closed yet (a failure to close one does not stop the rest). */
export async function closeOpened(): Promise<void> {
  await Promise.allSettled([...opened].map((close) => close()));
}
