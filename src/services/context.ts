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
  /** A line for stderr: warnings and one-time notices. */
  /** Whether progress is drawn: services skip the work of estimating totals when nobody sees them. */
  readonly interactive: boolean
  notice(message: string): void
  progress(label: string, totalBytes?: number): Progress
}

/** The collaborators a service needs; commands build it, tests pass their own. */
export interface BackupContext {
  env: ResolvedEnvironment
  keys: KeyRing
  now: () => Date
  reporter: Reporter
  signal: AbortSignal
  /** How long a streaming stage may move no data before it is failed as stalled. */
  stallTimeoutMs: number
  store: Store
  /** Where snapshots are staged before upload (TMPDIR by default). */
  tempRoot: string
  toolVersion: string
}

/** Progress for nobody: what a reporter returns when nothing is drawn. */
export const noProgress: Progress = {advance() {}, done() {}, expect() {}}

export const silentReporter: Reporter = {
  interactive: false,
  notice() {},
  progress: () => noProgress,
}
