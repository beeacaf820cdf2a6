import {unanswered} from '../lib/stall.js'
import {StoreCallOptions} from './port.js'

/**
 * Calls into a file system that may hang (a folder on an NFS share whose server went away), each raced
 * against the command's signal and the stall timeout: the caller fails with a stall of the store, or
 * stops on SIGINT/SIGTERM, instead of waiting with it. The call itself stays with its thread until the
 * kernel lets it go (see settling and closeOnceSettled).
 *
 * One listener on the signal for all the calls, not one a call: a listing has dozens in flight.
 */
export class BoundedCalls {
  /** The calls in flight that the signal fails. */
  private readonly pending = new Set<(error: unknown) => void>()

  constructor(
    /** What answers the calls, as a stall names it: "the store folder /mnt/backups". */
    private readonly subject: string,
    private readonly options: StoreCallOptions,
  ) {
    const {signal} = options
    signal?.addEventListener(
      'abort',
      () => {
        for (const fail of this.pending) fail(signal.reason)
      },
      {once: true},
    )
  }

  /** `work`, failing as a stall once it has not answered for the stall timeout, or with the signal's reason when it aborts. */
  run<T>(what: string, work: Promise<T>): Promise<T> {
    const {signal, stallTimeoutMs} = this.options
    if (signal === undefined && stallTimeoutMs === undefined) return work
    if (signal?.aborted) return Promise.reject(signal.reason)
    return new Promise<T>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer)
        this.pending.delete(fail)
      }

      const fail = (error: unknown) => {
        settle()
        reject(error)
      }

      const timer =
        stallTimeoutMs === undefined
          ? undefined
          : setTimeout(() => fail(unanswered(this.subject, what, stallTimeoutMs)), stallTimeoutMs)
      timer?.unref()
      this.pending.add(fail)
      work.then((value) => {
        settle()
        resolve(value)
      }, fail)
    })
  }
}

/** `work`, and whether it has settled: a call that a stall or a signal gave up on may still wait in the kernel. */
export function settling<T>(work: Promise<T>): {settled(): boolean; work: Promise<T>} {
  let settled = false
  const mark = () => {
    settled = true
  }

  work.then(mark, mark)
  return {settled: () => settled, work}
}

/**
 * Closes a file or folder after a call on it failed. A call that is still waiting in the kernel would
 * hold the close too: the file then closes in the background, once the call ends.
 */
export async function closeOnceSettled(opened: {close(): Promise<void>}, call: {settled(): boolean}): Promise<void> {
  if (call.settled()) await opened.close()
  else opened.close().catch(() => {})
}
