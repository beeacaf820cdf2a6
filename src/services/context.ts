import {ResolvedEnvironment} from '../config/load.js'
import {Store} from '../store/port.js'
import {KeyRing} from './keys.js'

/** Progress of one long step; drawn on a TTY, silent otherwise. */
export interface Progress {
  advance(bytes: number): void
  done(): void
}

/** How services talk to the person running them, without knowing about terminals. */
export interface Reporter {
  /** A line for stderr: warnings and one-time notices. */
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

export const silentReporter: Reporter = {
  notice() {},
  progress: () => ({advance() {}, done() {}}),
}
