import {RetentionPolicy} from '../config/schema.js'
import {CompleteBackup, Tier} from './backup.js'

export interface RetentionDecision {
  id: string
  keep: boolean
  reason: string
  tier: null | Tier
}

const DAY_MS = 24 * 60 * 60 * 1000

/**
 * Decides, for every complete backup, whether the environment's policy keeps it and why.
 * Pure: the same backups, policy and `now` always give the same answer.
 *
 * On-demand backups: every one younger than `days`; of the older ones, the `keepOlder` newest.
 * Pinned backups are always kept and take no slot; the newest complete backup is never removed.
 */
export function applyRetention(
  backups: readonly CompleteBackup[],
  policy: RetentionPolicy,
  now: Date,
): RetentionDecision[] {
  const newest = newestOf(backups)
  const {days, keepOlder} = policy.onDemand
  const onDemand = backups
    .filter((backup) => backup.manifest.trigger === 'on-demand' && !backup.pinned)
    .sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt))
  const decisions = new Map<string, RetentionDecision>()
  let olderKept = 0
  for (const backup of onDemand) {
    const {id} = backup.manifest
    const age = now.getTime() - Date.parse(backup.manifest.createdAt)
    if (age < days * DAY_MS) {
      decisions.set(id, {id, keep: true, reason: `on-demand, younger than ${days} days`, tier: 'on-demand'})
    } else if (olderKept < keepOlder) {
      olderKept++
      decisions.set(id, {
        id,
        keep: true,
        reason: `on-demand, older than ${days} days and among the ${keepOlder} newest`,
        tier: 'on-demand',
      })
    } else {
      decisions.set(id, {
        id,
        keep: false,
        reason: `on-demand, older than ${days} days and not among the ${keepOlder} newest`,
        tier: 'on-demand',
      })
    }
  }

  return backups.map((backup) => {
    const {id, trigger} = backup.manifest
    if (backup.pinned) return {id, keep: true, reason: 'pinned', tier: trigger === 'on-demand' ? 'on-demand' : null}
    const decision = decisions.get(id) ?? {id, keep: true, reason: 'scheduled', tier: null}
    if (!decision.keep && id === newest)
      return {...decision, keep: true, reason: 'the newest complete backup is always kept'}
    return decision
  })
}

function newestOf(backups: readonly CompleteBackup[]): string | undefined {
  let newest: CompleteBackup | undefined
  for (const backup of backups) {
    if (newest === undefined || backup.manifest.createdAt > newest.manifest.createdAt) newest = backup
  }

  return newest?.manifest.id
}
