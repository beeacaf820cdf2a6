import {Transform} from 'node:stream'

import {BackupError} from '../errors.js'

/** How long a stage may move no data before the pipeline is failed, unless DIVIO_BACKUP_STALL_SECONDS says. */
export const DEFAULT_STALL_SECONDS = 120

export function stallTimeoutMs(variables: NodeJS.ProcessEnv): number {
  const seconds = Number(variables.DIVIO_BACKUP_STALL_SECONDS)
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_STALL_SECONDS) * 1000
}

/** A point in a pipeline that the watchdog observes: bytes pass through it unchanged. */
export interface Probe extends Transform {
  /** True when what comes after this point has stopped taking data: its buffer is full. */
  readonly blocked: boolean
}

/**
 * Fails a streaming transfer that stops moving, and says which stage stopped. A stalled database, a
 * hung NFS read or an S3 endpoint that accepts a connection but never answers would otherwise leave
 * the command waiting forever.
 *
 * Two probes are placed in the pipeline: one right after the source and one right before the store.
 * When neither has seen a byte for the timeout, the blame goes to the first stage, from the store
 * backwards, that holds data it cannot pass on: the store when the probe before it is blocked, the
 * stages in between when only the source probe is blocked, and otherwise the source. After the last
 * byte, the store has the same time to confirm the write.
 */
export class StallWatchdog {
  /** Place right before the store. */
  readonly sink: Probe
  /** Place right after the source. */
  readonly source: Probe
  /** Progress seen elsewhere: a staged object's upload, which passes neither probe, calls it. */
  readonly touch = (): void => {
    this.lastActivity = Date.now()
  }
  private lastActivity = Date.now()
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly options: {
      middle: string
      onStall: (error: BackupError) => void
      source: string
      /** Who confirms the write at the end. */
      store: string
      timeoutMs: number
      /** Who takes the bytes, where that is not the store (a file staged for it); the store by default. */
      writer?: string
    },
  ) {
    this.sink = this.probe()
    this.source = this.probe()
    const interval = Math.min(1000, Math.max(50, options.timeoutMs / 4))
    this.timer = setInterval(() => this.check(), interval)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
  }

  private check(): void {
    const idle = Date.now() - this.lastActivity
    if (idle < this.options.timeoutMs) return
    this.stop()
    const seconds = Math.round(idle / 1000)
    const {middle, source, store, writer = store} = this.options
    const [where, what] = this.sink.writableEnded
      ? [store, `did not confirm the write within ${seconds} s of the last byte`]
      : this.sink.blocked
        ? [writer, `accepted no data for ${seconds} s`]
        : this.source.blocked
          ? [middle, `passed no data on for ${seconds} s`]
          : [source, `sent no data for ${seconds} s`]
    this.options.onStall(
      new BackupError('SOURCE_UNAVAILABLE', `Stalled: ${where} ${what}.`, {
        exitCode: 7,
        suggestion: `Check that ${where} is reachable and responding, then run the command again. DIVIO_BACKUP_STALL_SECONDS sets how long a stage may stall (now ${Math.round(this.options.timeoutMs / 1000)} s).`,
      }),
    )
  }

  private probe(): Probe {
    const {touch} = this
    const probe = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        touch()
        callback(null, chunk)
      },
    }) as Probe
    // Reading counts as progress too: a slow consumer that still takes data is not stalled.
    probe.on('drain', touch)
    Object.defineProperty(probe, 'blocked', {
      // Paused by its consumer (backpressure), or holding as much as it may.
      get: () =>
        probe.readableFlowing === false ||
        probe.readableLength >= probe.readableHighWaterMark ||
        probe.writableNeedDrain,
    })
    return probe
  }
}

/**
 * The watchdog of work that is not a stream: a loop of reads (incremental media reads file by file).
 * `race` makes each awaited step fail once nothing has called `touch` for the timeout, or once the
 * command is interrupted, so a read that hangs (a hung mount) fails the backup instead of holding it
 * forever; the read itself is left to its thread-pool thread.
 */
export class ActivityWatchdog {
  readonly touch = (): void => {
    this.lastActivity = Date.now()
  }
  private failure: Error | undefined
  private lastActivity = Date.now()
  private readonly timer: NodeJS.Timeout
  /**
   * The steps awaited now. Each race registers here rather than on one long-lived pending promise:
   * Promise.race against such a promise leaves a reaction on it for every call, and with it the
   * step's result (a blob), for as long as the watchdog lives.
   */
  private readonly waiting = new Set<(error: Error) => void>()

  /** `signal`: an interruption (SIGINT/SIGTERM) ends the step at once too. */
  constructor(options: {signal?: AbortSignal; source: string; timeoutMs: number}) {
    options.signal?.addEventListener('abort', () => this.fail(options.signal!.reason as Error), {once: true})
    const interval = Math.min(1000, Math.max(50, options.timeoutMs / 4))
    this.timer = setInterval(() => {
      const idle = Date.now() - this.lastActivity
      if (idle < options.timeoutMs) return
      this.stop()
      this.fail(
        new BackupError(
          'SOURCE_UNAVAILABLE',
          `Stalled: ${options.source} sent no data for ${Math.round(idle / 1000)} s.`,
          {
            exitCode: 7,
            suggestion: `Check that ${options.source} is reachable and responding, then run the command again. DIVIO_BACKUP_STALL_SECONDS sets how long a stage may stall (now ${Math.round(options.timeoutMs / 1000)} s).`,
          },
        ),
      )
    }, interval)
    this.timer.unref()
  }

  /** Resolves as `step` does, or rejects with the stall (or interruption) error first. */
  race<T>(step: Promise<T>): Promise<T> {
    if (this.failure) return Promise.reject(this.failure)
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject)
      step.then(
        (value) => {
          this.waiting.delete(reject)
          resolve(value)
        },
        (error: unknown) => {
          this.waiting.delete(reject)
          reject(error)
        },
      )
    })
  }

  stop(): void {
    clearInterval(this.timer)
  }

  private fail(error: Error): void {
    this.failure ??= error
    for (const reject of this.waiting) reject(this.failure)
    this.waiting.clear()
  }
}

/**
 * `work`, bounded like a streaming stage: it fails when `signal` aborts (SIGINT/SIGTERM), and as a
 * stall of `where` when it has not settled within `timeoutMs`. For the store's small calls that
 * precede a transfer (a listing), which no watchdog observes: an endpoint that accepts a connection
 * and never answers must not hold a command forever.
 */
export async function withinStallTimeout<T>(
  work: Promise<T>,
  options: {signal: AbortSignal; timeoutMs: number; what: string; where: string},
): Promise<T> {
  const {signal, timeoutMs, what, where} = options
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  const bound = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(signal.reason)
    if (signal.aborted) onAbort()
    signal.addEventListener('abort', onAbort, {once: true})
    timer = setTimeout(() => reject(unanswered(where, what, timeoutMs)), timeoutMs)
    timer.unref()
  })
  try {
    return await Promise.race([work, bound])
  } finally {
    clearTimeout(timer)
    signal.removeEventListener('abort', onAbort!)
  }
}

/** The failure of a call to `where` (a store) that has not answered `what` within `timeoutMs`. */
export function unanswered(where: string, what: string, timeoutMs: number): BackupError {
  const seconds = Math.round(timeoutMs / 1000)
  return new BackupError('STORE_UNAVAILABLE', `Stalled: ${where} did not answer ${what} within ${seconds} s.`, {
    suggestion: `Check that ${where} is reachable and responding, then run the command again. DIVIO_BACKUP_STALL_SECONDS sets how long a stage may stall (now ${seconds} s).`,
  })
}
