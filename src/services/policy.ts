import {Tier} from '../domain/backup.js'
import {simulateDailySchedule} from '../domain/retention-projection.js'
import {nextSlot, Schedule} from '../domain/schedule.js'
import {BackupContext} from './context.js'

/** `retention` --json. */
export interface RetentionReport {
  policies: {
    /** Whether create and the tick apply the policy to their own trigger's backups (else only prune does). */
    afterBackup: boolean
    incompleteGraceHours: number
    onDemand: {days: number; keepOlder: number}
    schedule: null | Schedule
    scheduled: {daily: number; monthly: number; weekly: number; yearly: number}
    timezone: string
  }
  simulation: null | {
    days: number
    keep: {createdAt: string; tier: null | Tier}[]
    /** The schedule the simulation assumed. */
    schedule: Schedule
  }
  /** The policies in words, one sentence per line. */
  summary: string[]
}

export function describeRetention(context: BackupContext, simulateDays?: number): RetentionReport {
  const {retention, schedule} = context.env
  const timezone = schedule?.timezone ?? 'UTC'
  const {daily, monthly, weekly, yearly} = retention.scheduled
  const tiers = [
    daily > 0 ? `the newest backup of each of the ${daily} most recent days that have one (daily)` : undefined,
    weekly > 0 ? `the oldest of each of the ${weekly} most recent ISO weeks, Monday to Sunday (weekly)` : undefined,
    monthly > 0 ? `the oldest of each of the ${monthly} most recent months (monthly)` : undefined,
    yearly > 0 ? `the oldest of each of the ${yearly} most recent years (yearly)` : undefined,
  ].filter(Boolean)
  const summary = [
    `On-demand backups: every one younger than ${retention.onDemand.days} days, and the ${retention.onDemand.keepOlder} newest of the older ones.`,
    `Scheduled backups: ${tiers.join('; ')}. Days, weeks and months are counted in ${timezone}, and only periods that hold a backup count, so a paused schedule loses nothing.`,
    'Pinned backups are always kept and take no slot. The newest complete backup is never removed.',
    `Incomplete backups (never committed) are removed by prune once nothing has written to them for ${retention.incompleteGraceHours} h.`,
    retention.afterBackup
      ? 'create and schedule run apply the policy to their own kind of backup once theirs is complete; prune applies all of it.'
      : 'create and schedule run delete nothing ("afterBackup": false): only prune applies the policy.',
  ]
  const assumed: Schedule = schedule ?? {at: '02:00', timezone}
  return {
    policies: {
      afterBackup: retention.afterBackup,
      incompleteGraceHours: retention.incompleteGraceHours,
      onDemand: retention.onDemand,
      schedule: schedule ?? null,
      scheduled: {daily, monthly, weekly, yearly},
      timezone,
    },
    simulation:
      simulateDays === undefined
        ? null
        : {
            days: simulateDays,
            keep: simulateDailySchedule({
              days: simulateDays,
              nextSlotAfter: (instant) => nextSlot(assumed, instant),
              policies: retention,
              start: context.now(),
              timezone,
            }).map(({createdAt, tier}) => ({createdAt, tier})),
            schedule: assumed,
          },
    summary,
  }
}
