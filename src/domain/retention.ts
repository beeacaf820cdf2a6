import {DateTime, IANAZone} from 'luxon'

import {Tier} from './backup.js'
import {Trigger} from './manifest.js'

/**
 * Retention (DESIGN §8): which complete backups a policy keeps, and why. Pure: no clock, no I/O, and
 * tiers are derived from timestamps on every run, never stored.
 *
 * - On-demand: every on-demand backup younger than `days`; of the older ones, the `keepOlder` newest.
 * - Scheduled, grandfather-father-son, in the schedule's time zone:
 *   1. daily: for the `daily` most recent calendar days that hold a scheduled backup, that day's newest;
 *   2. weekly: of the rest, for the `weekly` most recent ISO weeks (Monday–Sunday) holding one, the oldest;
 *   3. monthly: of the rest, for the `monthly` most recent calendar months holding one, the oldest;
 *   4. yearly (optional): of the rest, for the `yearly` most recent years holding one, the oldest;
 *   everything else is removed. Only periods that hold a backup count, so a stopped scheduler loses nothing.
 * - Pinned backups are always kept, with reason `pinned`, and take no slot.
 * - The newest complete backup is never removed.
 */

export interface RetentionCandidate {
  /** ISO-8601 instant. */
  createdAt: string
  id: string
  pinned: boolean
  trigger: Trigger
}

export interface RetentionPolicies {
  onDemand: {days: number; keepOlder: number}
  scheduled: {daily: number; monthly: number; weekly: number; yearly?: number}
}

export interface KeepDecision {
  id: string
  reason: string
  tier: null | Tier
}

export interface RemoveDecision {
  id: string
  reason: string
}

export interface RetentionResult {
  /** Newest first. */
  keep: KeepDecision[]
  /** Newest first. */
  remove: RemoveDecision[]
}

const DAY_MS = 24 * 60 * 60 * 1000

/** Why a policy cannot be applied, or undefined when it can. A policy that would keep nothing is refused. */
export function policyProblem(policies: RetentionPolicies): string | undefined {
  const {days, keepOlder} = policies.onDemand
  const {daily, monthly, weekly, yearly = 0} = policies.scheduled
  if (days === 0 && keepOlder === 0) return 'retention.onDemand keeps nothing (days and keepOlder are both 0)'
  if (daily + weekly + monthly + yearly === 0) return 'retention.scheduled keeps nothing (every count is 0)'
  return undefined
}

export function isValidTimeZone(zone: string): boolean {
  return IANAZone.isValidZone(zone)
}

export function applyRetention(
  backups: readonly RetentionCandidate[],
  policies: RetentionPolicies,
  now: Date,
  timezone: string,
): RetentionResult {
  const problem = policyProblem(policies)
  if (problem) throw new Error(`refusing to apply retention: ${problem}`)
  if (!isValidTimeZone(timezone)) throw new Error(`unknown time zone: ${timezone}`)

  const sorted: Timed[] = backups.map((backup) => ({...backup, time: Date.parse(backup.createdAt)})).sort(newestFirst)
  const decisions = new Map<string, KeepDecision | (RemoveDecision & {remove: true})>()
  for (const backup of sorted) {
    if (backup.pinned)
      decisions.set(backup.id, {
        id: backup.id,
        reason: 'pinned',
        tier: backup.trigger === 'on-demand' ? 'on-demand' : null,
      })
  }

  decideOnDemand(
    sorted.filter((backup) => !backup.pinned && backup.trigger === 'on-demand'),
    policies.onDemand,
    now,
    decisions,
  )
  decideScheduled(
    sorted.filter((backup) => !backup.pinned && backup.trigger === 'scheduled'),
    policies.scheduled,
    timezone,
    decisions,
  )

  const keep: KeepDecision[] = []
  const remove: RemoveDecision[] = []
  for (const [index, backup] of sorted.entries()) {
    const decision = decisions.get(backup.id)!
    if ('remove' in decision) {
      if (index === 0) keep.push({id: backup.id, reason: 'the newest complete backup is always kept', tier: null})
      else remove.push({id: decision.id, reason: decision.reason})
    } else {
      keep.push(decision)
    }
  }

  return {keep, remove}
}

function decideOnDemand(
  backups: readonly Timed[],
  policy: RetentionPolicies['onDemand'],
  now: Date,
  decisions: Map<string, KeepDecision | (RemoveDecision & {remove: true})>,
): void {
  const {days, keepOlder} = policy
  let olderKept = 0
  for (const backup of backups) {
    const age = now.getTime() - backup.time
    if (age < days * DAY_MS) {
      decisions.set(backup.id, {
        id: backup.id,
        reason: `on-demand, younger than ${plural(days, 'day')}`,
        tier: 'on-demand',
      })
    } else if (olderKept < keepOlder) {
      olderKept++
      decisions.set(backup.id, {
        id: backup.id,
        reason: `on-demand, older than ${plural(days, 'day')} and among the ${keepOlder} newest of those`,
        tier: 'on-demand',
      })
    } else {
      decisions.set(backup.id, {
        id: backup.id,
        reason: `on-demand, older than ${plural(days, 'day')} and not among the ${keepOlder} newest`,
        remove: true,
      })
    }
  }
}

type Timed = RetentionCandidate & {time: number}

interface TierRule {
  count: number
  name: 'daily' | 'monthly' | 'weekly' | 'yearly'
  /** daily keeps each period's newest backup; the longer tiers keep the oldest. */
  pick: 'newest' | 'oldest'
  unit: string
}

function decideScheduled(
  backups: readonly Timed[],
  policy: RetentionPolicies['scheduled'],
  timezone: string,
  decisions: Map<string, KeepDecision | (RemoveDecision & {remove: true})>,
): void {
  const rules: TierRule[] = [
    {count: policy.daily, name: 'daily', pick: 'newest', unit: 'day'},
    {count: policy.weekly, name: 'weekly', pick: 'oldest', unit: 'ISO week'},
    {count: policy.monthly, name: 'monthly', pick: 'oldest', unit: 'month'},
    {count: policy.yearly ?? 0, name: 'yearly', pick: 'oldest', unit: 'year'},
  ]
  const calendar = new CalendarCache(timezone)
  let remaining = backups
  // Per backup, why each tier passed it over; joined into the reason when nothing keeps it.
  const passedOver = new Map<string, string[]>()
  for (const rule of rules) {
    if (rule.count === 0) continue
    const groups = new Map<number, {label: string; members: Timed[]}>()
    // `remaining` is newest first, so periods are met from the most recent one backwards.
    for (const backup of remaining) {
      const key = calendar.key(backup.time, rule.name)
      const group = groups.get(key)
      if (group) group.members.push(backup)
      else groups.set(key, {label: calendar.label(backup.time, rule.name), members: [backup]})
    }

    const kept = new Set<string>()
    let rank = 0
    for (const {label, members} of groups.values()) {
      rank++
      if (rank > rule.count) {
        for (const backup of members)
          note(passedOver, backup.id, `${rule.unit} ${label} is not among the ${rule.count} most recent`)
        continue
      }

      const chosen = rule.pick === 'newest' ? members[0] : members.at(-1)!
      kept.add(chosen.id)
      decisions.set(chosen.id, {id: chosen.id, reason: `${rule.name} (${rule.unit} ${label})`, tier: rule.name})
      for (const backup of members) {
        if (backup !== chosen)
          note(
            passedOver,
            backup.id,
            `${rule.unit} ${label} keeps ${rule.pick === 'newest' ? 'a newer' : 'an older'} one`,
          )
      }
    }

    remaining = remaining.filter((backup) => !kept.has(backup.id))
  }

  for (const backup of remaining) {
    const why = passedOver.get(backup.id) ?? []
    decisions.set(backup.id, {id: backup.id, reason: `scheduled, kept by no tier: ${why.join('; ')}`, remove: true})
  }
}

/** Calendar periods in one time zone, computed by luxon and cached per quarter hour of UTC time. */
class CalendarCache {
  private readonly cache = new Map<number, DateTime>()

  constructor(private readonly zone: string) {}

  key(instant: number, tier: TierRule['name']): number {
    const local = this.local(instant)
    switch (tier) {
      case 'daily': {
        return local.year * 10_000 + local.month * 100 + local.day
      }

      case 'monthly': {
        return local.year * 100 + local.month
      }

      case 'weekly': {
        return local.weekYear * 100 + local.weekNumber
      }

      case 'yearly': {
        return local.year
      }
    }
  }

  label(instant: number, tier: TierRule['name']): string {
    const local = this.local(instant)
    switch (tier) {
      case 'daily': {
        return local.toFormat('yyyy-MM-dd')
      }

      case 'monthly': {
        return local.toFormat('yyyy-MM')
      }

      case 'weekly': {
        return `${local.weekYear}-W${String(local.weekNumber).padStart(2, '0')}`
      }

      case 'yearly': {
        return String(local.year)
      }
    }
  }

  private local(instant: number): DateTime {
    // Zone offsets and their changes fall on quarter hours, so every instant in a quarter hour shares
    // its start's calendar day; caching by quarter hour keeps 100,000 backups well under 200 ms.
    const quarter = Math.floor(instant / 900_000)
    let local = this.cache.get(quarter)
    if (local === undefined) {
      local = DateTime.fromMillis(quarter * 900_000, {zone: this.zone})
      this.cache.set(quarter, local)
    }

    return local
  }
}

function note(map: Map<string, string[]>, id: string, text: string): void {
  const list = map.get(id)
  if (list) list.push(text)
  else map.set(id, [text])
}

function newestFirst(a: Timed, b: Timed): number {
  return b.time - a.time || b.id.localeCompare(a.id)
}

function plural(count: number, unit: string): string {
  return `${count} ${unit}${count === 1 ? '' : 's'}`
}

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
