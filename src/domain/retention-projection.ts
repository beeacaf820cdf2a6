import {Tier} from './backup.js'
import {countOf, formatInstant} from './format.js'
import {applyRetention, DAY_MS, KeepDecision, RetentionCandidate, RetentionPolicies} from './retention.js'

/**
 * Retention looking ahead (docs/retention-and-schedules.md): what a schedule would hold after a while,
 * and when the current policy would stop keeping each backup. Both replay applyRetention over backups
 * to come; pure, like it, with `now` as an argument.
 */

/**
 * What a daily schedule would hold after `days` days, starting with the first slot after `start`, with
 * retention applied after every backup, as `schedule run` does.
 */
export function simulateDailySchedule(options: {
  days: number
  nextSlotAfter: (instant: Date) => Date
  policies: RetentionPolicies
  start: Date
  timezone: string
}): {createdAt: string; id: string; tier: null | Tier}[] {
  const {days, nextSlotAfter, policies, start, timezone} = options
  let held: RetentionCandidate[] = []
  let kept: KeepDecision[] = []
  let slot = start
  for (let day = 0; day < days; day++) {
    slot = nextSlotAfter(slot)
    held.push({
      createdAt: slot.toISOString(),
      id: `day-${String(day).padStart(6, '0')}`,
      pinned: false,
      trigger: 'scheduled',
    })
    kept = applyRetention(held, policies, slot, timezone).keep
    const keptIds = new Set(kept.map((decision) => decision.id))
    held = held.filter((backup) => keptIds.has(backup.id))
  }

  const createdAt = new Map(held.map((backup) => [backup.id, backup.createdAt]))
  return kept.map(({id, tier}) => ({createdAt: createdAt.get(id)!, id, tier}))
}

/** When the current policy would stop keeping a backup, as far as that can be known. */
export interface Expiry {
  /** The instant it would be removed; null when that depends on something that cannot be foreseen. */
  expiresAt: null | string
  /**
   * The instant before which it is surely kept: `expiresAt` where that is known, and for an on-demand
   * backup the end of its days (after which the newest older ones are still kept); else null.
   */
  keptAtLeastUntil: null | string
  /** The same in words. */
  note: string
}

/**
 * Projects, for each complete backup, when the current policy would remove it if the daily schedule
 * continues (one scheduled backup per slot from now on) and nothing else changes. On-demand backups
 * depend on future on-demand backups, so their expiry is described rather than dated.
 */
export function projectExpiry(options: {
  backups: readonly RetentionCandidate[]
  /** Omitted when the environment has no schedule: scheduled expiries cannot be known then. */
  nextSlotAfter?: (instant: Date) => Date
  now: Date
  policies: RetentionPolicies
  timezone: string
}): Map<string, Expiry> {
  const {backups, nextSlotAfter, now, policies, timezone} = options
  const result = new Map<string, Expiry>()
  const decided = applyRetention(backups, policies, now, timezone)
  for (const {id, reason} of decided.remove)
    result.set(id, {expiresAt: null, keptAtLeastUntil: null, note: `removed by the next prune (${reason})`})
  const kept = new Map(decided.keep.map((decision) => [decision.id, decision]))
  const {days, keepOlder} = policies.onDemand
  const scheduled: RetentionCandidate[] = []
  for (const backup of backups) {
    const decision = kept.get(backup.id)
    if (decision === undefined) continue
    if (backup.pinned) {
      result.set(backup.id, {expiresAt: null, keptAtLeastUntil: null, note: 'kept while pinned'})
    } else if (backup.trigger === 'on-demand') {
      const agesOut = new Date(Date.parse(backup.createdAt) + days * DAY_MS)
      result.set(backup.id, {
        expiresAt: null,
        keptAtLeastUntil: agesOut > now ? agesOut.toISOString() : null,
        note:
          agesOut > now
            ? `younger than ${countOf(days, 'day')} until ${formatInstant(agesOut.toISOString())}; after that, kept while among the ${keepOlder} newest older on-demand backups`
            : `kept while among the ${keepOlder} newest on-demand backups older than ${countOf(days, 'day')}`,
      })
    } else {
      scheduled.push(backup)
    }
  }

  if (nextSlotAfter === undefined) {
    for (const {id} of scheduled) {
      result.set(id, {
        expiresAt: null,
        keptAtLeastUntil: null,
        note: 'depends on future scheduled backups; configure a schedule to project it',
      })
    }

    return result
  }

  const horizonDays = Math.min(3660, ((policies.scheduled.yearly ?? 0) + 2) * 366)
  let held = scheduled
  const pending = new Set(scheduled.map(({id}) => id))
  let slot = now
  for (let day = 0; day < horizonDays && pending.size > 0; day++) {
    slot = nextSlotAfter(slot)
    held = [...held, {createdAt: slot.toISOString(), id: `\u0000future-${day}`, pinned: false, trigger: 'scheduled'}]
    const stillKept = new Set(applyRetention(held, policies, slot, timezone).keep.map(({id}) => id))
    for (const backup of held) {
      if (!stillKept.has(backup.id) && pending.delete(backup.id)) {
        result.set(backup.id, {
          expiresAt: slot.toISOString(),
          keptAtLeastUntil: slot.toISOString(),
          note: `removed after the scheduled backup of ${formatInstant(slot.toISOString())}`,
        })
      }
    }

    held = held.filter(({id}) => stillKept.has(id))
  }

  for (const id of pending)
    result.set(id, {
      expiresAt: null,
      keptAtLeastUntil: null,
      note: `still kept after ${horizonDays} more days of scheduled backups`,
    })
  return result
}
