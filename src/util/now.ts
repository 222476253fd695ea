/**
 * The result of a synchronous computation as a promise, its exception as a rejection: for
 * functions that keep an asynchronous signature (their callers await them) while doing their
 * small file-system work with synchronous calls, which cost less than a thread-pool round trip.
 */
export function resolvedNow<T>(compute: () => T): Promise<T> {
  try {
    return Promise.resolve(compute());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
