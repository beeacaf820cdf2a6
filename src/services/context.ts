import {ResolvedEnvironment} from '../config/load.js'
import {Store} from '../store/port.js'
import {KeyRing} from './keys.js'

/** Progress of one long step; drawn on a TTY, silent otherwise. */
export interface Progress {
  advance(bytes: number): void
  done(): void
  /**
   * Sets the step's total once it is known, or an estimate of it (shown as `~`), so that the bar and
   * the time left can be drawn. Can be called at any time, and again with a better figure.
   */
  expect(totalBytes: number, options?: {estimated?: boolean}): void
}

/** How services talk to the person running them, without knowing about terminals. */
export interface Reporter {
  /** A line for --verbose (a stage and its timing, a program started); nothing otherwise. */
  detail(message: string): void
  /** Whether progress is drawn: services skip the work of estimating totals when nobody sees them. */
  readonly interactive: boolean
  /** A line for stderr: warnings and one-time notices. */
  notice(message: string): void
  progress(label: string, totalBytes?: number): Progress
}

/**
 * What a command has before it reads any config: the process's variables, the clock, the terminal,
 * the signal of SIGINT/SIGTERM, and how to build the key ring of an environment. `init` works from
 * this alone, since the config it reads is the one it writes; every other service gets a BackupContext.
 */
export interface ServiceSetup {
  cwd: string
  keys: (env: ResolvedEnvironment) => KeyRing
  now: () => Date
  reporter: Reporter
  signal: AbortSignal
  stallTimeoutMs: number
  /** Whether `now` is the system clock (see BackupContext.systemClock). */
  systemClock?: boolean
  variables: NodeJS.ProcessEnv
}

/** The collaborators a service needs; commands build it, tests pass their own. */
export interface BackupContext {
  env: ResolvedEnvironment
  /** How long one try of a notification hook may take (DIVIO_BACKUP_HOOK_TIMEOUT_SECONDS); unset: 10 s. */
  hookTimeoutMs?: number
  keys: KeyRing
  now: () => Date
  reporter: Reporter
  signal: AbortSignal
  /** How long a streaming stage may move no data before it is failed as stalled. */
  stallTimeoutMs: number
  /** This machine's memory of the stores it has seen (services/machine-state.ts). */
  statePath: string
  store: Store
  /**
   * Whether `now` is the system clock, which a store's own clock can vouch for (services/clock.ts):
   * not when DIVIO_BACKUP_NOW sets it for a simulation. Unset: not compared with the store's.
   */
  systemClock?: boolean
  /** Where snapshots are staged before upload (TMPDIR by default). */
  tempRoot: string
  toolVersion: string
  /**
   * The real time in ms, which file times are compared with (Date.now when unset): not `now`, which
   * DIVIO_BACKUP_NOW may set, since the kernel stamps files with the real time. Tests set it to place
   * a walk's start against the times of the files it reads.
   */
  wallClockMs?: () => number
}

/** The real time in ms (see BackupContext.wallClockMs). */
export function wallTimeMs(context: Pick<BackupContext, 'wallClockMs'>): number {
  return context.wallClockMs === undefined ? Date.now() : context.wallClockMs()
}

/**
 * Runs one stage of a command and, with --verbose, says how long it took: `stage database: 1.24 s`.
 * A failed stage is reported too, with its time, before the error goes on.
 */
export async function timedStage<T>(reporter: Reporter, name: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now()
  const took = () => `${((performance.now() - started) / 1000).toFixed(2)} s`
  try {
    const result = await work()
    reporter.detail(`stage ${name}: ${took()}`)
    return result
  } catch (error) {
    reporter.detail(`stage ${name}: failed after ${took()}`)
    throw error
  }
}

/** Progress for nobody: what a reporter returns when nothing is drawn. */
export const noProgress: Progress = {advance() {}, done() {}, expect() {}}

export const silentReporter: Reporter = {
  detail() {},
  interactive: false,
  notice() {},
  progress: () => noProgress,
}
