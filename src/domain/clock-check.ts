import {formatDuration} from './duration.js'

/**
 * Whether this machine's clock can be trusted with the decisions that depend on it. Retention deletes
 * by age, a schedule's tick skips a slot that already holds a backup, and `status` judges freshness by
 * the clock: a clock far off (a dead RTC battery, a VM resumed from an old snapshot, a container with
 * no time sync) would have each of them act on a wrong date, deleting backups as old, taking none
 * because every slot seems filled, or calling a schedule that stopped fresh. Pure: the evidence is
 * passed in.
 *
 * The evidence is what the machine cannot set: the signed creation times of the backups that
 * authenticated (a clock behind the history of the store), and, where the store has a clock of its own
 * (S3's LastModified and Date), the times it gave what it holds (a clock behind it), the time it gave
 * what this command has just stored, and the time of its last answer (a clock behind or ahead of it). A clock ahead of a store that shares it
 * (a folder on this machine) leaves no trace anywhere and cannot be caught.
 */

/**
 * How far the clock may be from the evidence: AWS refuses a request signed with a clock more than 15
 * minutes off, so past that the clock is wrong, not drifting. Writers a few minutes apart are not.
 */
export const CLOCK_TOLERANCE_MS = 15 * 60 * 1000

export interface ClockEvidence {
  /** The newest backup that authenticated, by its signed creation time (its writer's clock). */
  newestBackup?: {createdAt: string; id: string}
  now: Date
  /** Only from a store whose clock is its own (Store.ownClock). */
  store?: {
    /** The time the store gave what this command has just stored: the store's "now". */
    justStored?: {at: Date; what: string}
    /** The newest time the store gave anything of the environment. */
    newest?: Date
    /** The store's own time now (its last answer's). */
    now?: Date
  }
}

/** Why the clock cannot be trusted, in words, or undefined when nothing says it is off. */
export function clockProblem(evidence: ClockEvidence): string | undefined {
  const now = evidence.now.getTime()
  const reads = `this machine's clock reads ${evidence.now.toISOString()}`
  const {newestBackup, store} = evidence
  if (newestBackup !== undefined) {
    const later = Date.parse(newestBackup.createdAt) - now
    if (later > CLOCK_TOLERANCE_MS)
      return `${reads}, but backup ${newestBackup.id} was made at ${newestBackup.createdAt}, ${span(later)} later`
  }

  if (store?.justStored !== undefined) {
    const {at, what} = store.justStored
    const ahead = now - at.getTime()
    if (Math.abs(ahead) > CLOCK_TOLERANCE_MS)
      return `${reads}, ${span(ahead)} ${ahead > 0 ? 'ahead of' : 'behind'} the store's clock, which stamped ${what} at ${at.toISOString()}`
  }

  if (store?.now !== undefined) {
    const ahead = now - store.now.getTime()
    if (Math.abs(ahead) > CLOCK_TOLERANCE_MS)
      return `${reads}, ${span(ahead)} ${ahead > 0 ? 'ahead of' : 'behind'} the store's clock, which reads ${store.now.toISOString()}`
  }

  if (store?.newest !== undefined) {
    const later = store.newest.getTime() - now
    if (later > CLOCK_TOLERANCE_MS)
      return `${reads}, but the store stamped an object of this environment at ${store.newest.toISOString()}, ${span(later)} later`
  }

  return undefined
}

function span(ms: number): string {
  return formatDuration(Math.abs(ms) / 1000)
}
