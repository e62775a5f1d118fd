/**
 * Polling with a deadline, for code that waits on another process.
 *
 * @module
 */

/**
 * Calls `fn` every `intervalMs` until it returns a truthy value, and returns that value.
 *
 * @throws {Error} `timed out after <timeoutMs> ms waiting for <what>`, with the last error
 * thrown by `fn` as `cause`.
 */
export async function waitFor<T>(
  what: string,
  fn: () => T | Promise<T>,
  timeoutMs = 10_000,
  intervalMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (true) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`, {
        cause: lastError,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
