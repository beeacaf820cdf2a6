import {DateTime, IANAZone} from 'luxon'

import {Tier} from './backup.js'
import {countOf} from './format.js'
import {Trigger} from './manifest.js'

/**
 * Retention (docs/retention-and-schedules.md): which complete backups a policy keeps, and why. Pure: no clock, no I/O, and
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

export const DAY_MS = 24 * 60 * 60 * 1000

/** Why a policy cannot be applied, or undefined when it can. A policy that would keep nothing is refused. */
export function policyProblem(policies: RetentionPolicies): string | undefined {
  const {days, keepOlder} = policies.onDemand
  const {daily, monthly, weekly, yearly = 0} = policies.scheduled
  if (days === 0 && keepOlder === 0) return 'retention.onDemand keeps nothing (days and keepOlder are both 0)'
  if (daily + weekly + monthly + yearly === 0) return 'retention.scheduled keeps nothing (every count is 0)'
  return undefined
}

export function isValidTimeZone(zone: string): boolean {
  // UTC, the default without a schedule, needs no lookup: a thread's first one loads Intl's time-zone
  // data (20-30 ms, and 4-7 MiB at a create's peak), which every create and list paid to check it.
  // luxon takes UTC as a fixed offset, without Intl.
  if (zone === 'UTC') return true
  // Every other answer is remembered: each asks Intl for a new formatter (about 2 ms), and a list's
  // expiry projection applies retention once for every day it looks ahead.
  let valid = knownZones.get(zone)
  if (valid === undefined) {
    valid = IANAZone.isValidZone(zone)
    if (knownZones.size < KNOWN_ZONES_LIMIT) knownZones.set(zone, valid)
  }

  return valid
}

/** Zones come from the config, a few a process; the limit only bounds a caller that asks of many. */
const KNOWN_ZONES_LIMIT = 64
const knownZones = new Map<string, boolean>()

export function applyRetention(
  backups: readonly RetentionCandidate[],
  policies: RetentionPolicies,
  now: Date,
  timezone: string,
): RetentionResult {
  const problem = policyProblem(policies)
  if (problem) throw new Error(`refusing to apply retention: ${problem}`)
  if (!isValidTimeZone(timezone)) throw new Error(`unknown time zone: ${timezone}`)

  const sorted = newestFirst(backups)
  const verdicts: Verdicts = {keep: new Uint8Array(sorted.length), reasons: [], tiers: []}
  const onDemand: number[] = []
  const scheduled: number[] = []
  for (const [index, backup] of sorted.entries()) {
    if (backup.pinned) keep(verdicts, index, 'pinned', backup.trigger === 'on-demand' ? 'on-demand' : null)
    else if (backup.trigger === 'on-demand') onDemand.push(index)
    else scheduled.push(index)
  }

  decideOnDemand({sorted, verdicts}, onDemand, policies.onDemand, now)
  decideScheduled({sorted, verdicts}, scheduled, policies.scheduled, timezone)
  if (sorted.length > 0 && verdicts.keep[0] === 0) keep(verdicts, 0, 'the newest complete backup is always kept', null)

  const result: RetentionResult = {keep: [], remove: []}
  for (const [index, {id}] of sorted.entries()) {
    if (verdicts.keep[index] === 1)
      result.keep.push({id, reason: verdicts.reasons[index], tier: verdicts.tiers[index] ?? null})
    else result.remove.push({id, reason: verdicts.reasons[index]})
  }

  return result
}

/** Decisions by position in the newest-first order: kept or not, the reason, and the tier of kept ones. */
interface Verdicts {
  keep: Uint8Array
  reasons: string[]
  tiers: (null | Tier)[]
}

function keep(verdicts: Verdicts, index: number, reason: string, tier: null | Tier): void {
  verdicts.keep[index] = 1
  verdicts.reasons[index] = reason
  verdicts.tiers[index] = tier
}

function decideOnDemand(
  {sorted, verdicts}: {sorted: readonly Timed[]; verdicts: Verdicts},
  indices: readonly number[],
  policy: RetentionPolicies['onDemand'],
  now: Date,
): void {
  const {days, keepOlder} = policy
  const younger = `on-demand, younger than ${countOf(days, 'day')}`
  const olderKept = `on-demand, older than ${countOf(days, 'day')} and among the ${keepOlder} newest of those`
  const olderRemoved = `on-demand, older than ${countOf(days, 'day')} and not among the ${keepOlder} newest`
  const cutoff = now.getTime() - days * DAY_MS
  let older = 0
  for (const index of indices) {
    if (sorted[index].time > cutoff) keep(verdicts, index, younger, 'on-demand')
    else if (older++ < keepOlder) keep(verdicts, index, olderKept, 'on-demand')
    else verdicts.reasons[index] = olderRemoved
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
  {sorted, verdicts}: {sorted: readonly Timed[]; verdicts: Verdicts},
  indices: readonly number[],
  policy: RetentionPolicies['scheduled'],
  timezone: string,
): void {
  const rules: TierRule[] = [
    {count: policy.daily, name: 'daily', pick: 'newest', unit: 'day'},
    {count: policy.weekly, name: 'weekly', pick: 'oldest', unit: 'ISO week'},
    {count: policy.monthly, name: 'monthly', pick: 'oldest', unit: 'month'},
    {count: policy.yearly ?? 0, name: 'yearly', pick: 'oldest', unit: 'year'},
  ].filter((rule) => rule.count > 0) as TierRule[]
  const calendar = new Calendar(timezone)
  const days: (LocalDay | undefined)[] = []
  const dayOf = (index: number) => {
    days[index] ??= calendar.dayOf(sorted[index].time)
    return days[index]
  }

  let remaining = indices
  // Per tier, the backups inside its window (its most recent periods); everything after them in
  // `remaining` is older than those periods. Periods are contiguous in time and `remaining` is newest
  // first, so the calendar is consulted only inside the windows, not for the whole history.
  const windows: Set<number>[] = []
  for (const rule of rules) {
    const groups: number[][] = []
    let lastKey: number | undefined
    let position = 0
    for (; position < remaining.length; position++) {
      const key = dayOf(remaining[position])[rule.name]
      if (key !== lastKey) {
        if (groups.length === rule.count) break
        groups.push([])
        lastKey = key
      }

      groups.at(-1)!.push(remaining[position])
    }

    for (const members of groups) {
      const chosen = rule.pick === 'newest' ? members[0] : members.at(-1)!
      keep(verdicts, chosen, `${rule.name} (${rule.unit} ${dayOf(chosen).labels[rule.name]})`, rule.name)
    }

    windows.push(new Set(remaining.slice(0, position)))
    remaining = remaining.filter((index) => verdicts.keep[index] === 0)
  }

  // Most removed backups are older than every window and share one reason.
  const beyondAll = `scheduled, kept by no tier: ${rules.map((rule) => olderThanWindow(rule)).join('; ')}`
  for (const index of remaining) {
    if (windows.every((window) => !window.has(index))) {
      verdicts.reasons[index] = beyondAll
      continue
    }

    const why = rules.map((rule, ruleIndex) =>
      windows[ruleIndex].has(index)
        ? `${rule.unit} ${dayOf(index).labels[rule.name]} keeps ${rule.pick === 'newest' ? 'a newer' : 'an older'} one`
        : olderThanWindow(rule),
    )
    verdicts.reasons[index] = `scheduled, kept by no tier: ${why.join('; ')}`
  }
}

function olderThanWindow(rule: TierRule): string {
  return rule.count === 1
    ? `older than the most recent ${rule.unit} with a backup`
    : `older than the ${rule.count} most recent ${rule.unit}s with a backup`
}

/** The candidates with parsed times, newest first (ties by id); input already in either order is not re-sorted. */
function newestFirst(backups: readonly RetentionCandidate[]): Timed[] {
  const timed: Timed[] = backups.map((backup) => ({
    createdAt: backup.createdAt,
    id: backup.id,
    pinned: backup.pinned,
    time: Date.parse(backup.createdAt),
    trigger: backup.trigger,
  }))
  const comesFirst = (a: Timed, b: Timed) => b.time - a.time || b.id.localeCompare(a.id)
  let descending = true
  let ascending = true
  for (let index = 1; index < timed.length && (descending || ascending); index++) {
    const order = comesFirst(timed[index - 1], timed[index])
    if (order > 0) descending = false
    if (order < 0) ascending = false
  }

  if (descending) return timed
  if (ascending) return timed.reverse()
  return timed.sort(comesFirst)
}

interface LocalDay {
  daily: number
  /** The local day starts at this instant (inclusive)… */
  from: number
  /** Period labels for reasons: 2026-11-28, 2026-W48, 2026-11, 2026. */
  labels: Record<TierRule['name'], string>
  monthly: number
  /** …and ends at this one (exclusive). */
  until: number
  weekly: number
  yearly: number
}

/**
 * Calendar periods in one time zone. luxon finds each local day's bounds; instants inside known bounds
 * reuse them, so the cost grows with the number of distinct days, not of backups.
 */
class Calendar {
  private last: LocalDay | undefined

  constructor(private readonly zone: string) {}

  dayOf(instant: number): LocalDay {
    if (this.last && instant >= this.last.from && instant < this.last.until) return this.last
    // Shared across calls (simulations apply retention thousands of times over the same days). Keyed by
    // UTC hour and checked against the day's bounds, so a zone whose midnight falls inside an hour is
    // still exact; the cache only ever saves work.
    const key = `${this.zone}|${Math.floor(instant / 3_600_000)}`
    const cached = dayCache.get(key)
    if (cached && instant >= cached.from && instant < cached.until) {
      this.last = cached
      return cached
    }

    const local = DateTime.fromMillis(instant, {zone: this.zone}).startOf('day')
    this.last = {
      daily: local.year * 10_000 + local.month * 100 + local.day,
      from: local.toMillis(),
      labels: {
        daily: local.toFormat('yyyy-MM-dd'),
        monthly: local.toFormat('yyyy-MM'),
        weekly: `${local.weekYear}-W${String(local.weekNumber).padStart(2, '0')}`,
        yearly: String(local.year),
      },
      monthly: local.year * 100 + local.month,
      until: local.plus({days: 1}).toMillis(),
      weekly: local.weekYear * 100 + local.weekNumber,
      yearly: local.year,
    }
    if (dayCache.size >= DAY_CACHE_LIMIT) dayCache.clear()
    dayCache.set(key, this.last)
    return this.last
  }
}

const DAY_CACHE_LIMIT = 100_000
const dayCache = new Map<string, LocalDay>()
