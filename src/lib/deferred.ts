/** A promise with the functions that settle it (`Promise.withResolvers` needs Node 22). */
export interface Deferred<T> {
  promise: Promise<T>
  reject(error: Error): void
  resolve(value: T): void
}

/**
 * For a result that a stream's callbacks produce. The promise is marked handled, so that a stream that
 * fails before anyone awaits its result is not an unhandled rejection; whoever awaits it still sees it.
 */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: Error) => void
  const promise = new Promise<T>((resolve_, reject_) => {
    resolve = resolve_
    reject = reject_
  })
  promise.catch(() => {})
  return {promise, reject, resolve}
}
