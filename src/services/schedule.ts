import {BackupView} from '../domain/backup.js'
import {currentSlot, nextSlot, Schedule} from '../domain/schedule.js'
import {BackupError} from '../errors.js'
import {HookOutcome} from '../proof/hooks.js'
import {duringTick} from './activity.js'
import {catalogOf} from './catalog.js'
import {clockDoubt, untrustedClock} from './clock.js'
import {BackupContext} from './context.js'
import {createBackup} from './create.js'
import {drillBackup, DrillResult} from './drill.js'
import {lastDrills} from './list.js'
import {withHooks} from './notify.js'
import {PruneDecision, retentionAfterCreate} from './retention.js'

/** `schedule show` --json. */
export interface ScheduleInfo {
  at: string
  nextRun: string
  timezone: string
}

/** `schedule run` --json. */
export interface ScheduleRunResult {
  /** With --drill: the drill of the newest scheduled backup, when it had none yet; else null. */
  drill: DrillResult | null
  /** The scheduled backup that already covered this slot, when nothing was taken. */
  existing: null | string
  /** The notification hooks that ran, and how they fared (config `notify`). */
  notifications: HookOutcome[]
  removed: PruneDecision[]
  /**
   * An earlier tick of this environment still running on this machine, when this one took nothing for
   * it (its backup, longer than the hour between ticks, is the slot's).
   */
  running: null | {pid: number; since: string}
  slot: string
  taken: BackupView | null
}

export function scheduleOf(context: BackupContext): Schedule {
  if (context.env.schedule === undefined) {
    throw new BackupError('USAGE', `Environment "${context.env.name}" has no schedule.`, {
      suggestion:
        context.env.configSource === 'embedded default'
          ? 'Run `divio app backup init --schedule 02:00` (add --env NAME and --timezone ZONE as needed) to write a config with a schedule.'
          : `Add "schedule": {"at": "02:00", "timezone": "Europe/Zurich"} to environments.${context.env.name} in ${context.env.configSource}.`,
    })
  }

  return context.env.schedule
}

export function scheduleInfo(context: BackupContext): ScheduleInfo {
  const schedule = scheduleOf(context)
  return {...schedule, nextRun: nextSlot(schedule, context.now()).toISOString()}
}

/**
 * One cron tick, safe to run as often as you like: takes a scheduled backup when none exists for the
 * current slot, then applies the scheduled retention policy. Two ticks in one slot take one backup.
 */
export async function runScheduleTick(
  context: BackupContext,
  take: (context: BackupContext) => Promise<BackupView> = (ctx) =>
    createBackup(ctx, {database: true, media: true, trigger: 'scheduled'}),
  options: {drill?: boolean} = {},
): Promise<ScheduleRunResult> {
  const {notifications, result} = await withHooks(
    context,
    () => tick(context, take, options),
    (ticked) => ({
      backup: ticked.taken,
      ...(ticked.drill ? {drill: {checks: ticked.drill.checks, passed: ticked.drill.passed}} : {}),
      drillFailed: ticked.drill !== null && !ticked.drill.passed,
    }),
  )
  return {...result, notifications}
}

async function tick(
  context: BackupContext,
  take: (context: BackupContext) => Promise<BackupView>,
  options: {drill?: boolean},
): Promise<Omit<ScheduleRunResult, 'notifications'>> {
  const slot = currentSlot(scheduleOf(context), context.now())
  const ran = await duringTick(context, () => tickInSlot(context, slot, take, options))
  if ('result' in ran) return ran.result
  const {pid, since} = ran.earlier
  return {
    drill: null,
    existing: null,
    removed: [],
    running: {pid, since: since.toISOString()},
    slot: slot.toISOString(),
    taken: null,
  }
}

async function tickInSlot(
  context: BackupContext,
  slot: Date,
  take: (context: BackupContext) => Promise<BackupView>,
  options: {drill?: boolean},
): Promise<Omit<ScheduleRunResult, 'notifications'>> {
  const catalog = await catalogOf(context)
  const doubt = clockDoubt(context, catalog)
  if (doubt !== undefined) {
    // The slot is the clock's: on a clock behind the store's history every slot seems to hold a
    // backup, and the tick would take none and succeed, hour after hour. The data comes first: take
    // one, apply nothing the clock decides, and fail, so that whoever watches the job sees it.
    const taken = await take(context)
    throw untrustedClock(`Took backup ${taken.id}, but applied neither the schedule's slot nor retention`, doubt)
  }

  const existing = catalog.complete.find(
    ({manifest}) => manifest.trigger === 'scheduled' && Date.parse(manifest.createdAt) >= slot.getTime(),
  )
  const taken = existing ? null : await take(context)
  const removed = context.env.retention.afterBackup ? await retentionAfterCreate(context, 'scheduled', taken?.id) : []
  const every = context.env.drill?.every
  const drill = options.drill || every ? await drillNewestScheduled(context, options.drill ? undefined : every) : null
  return {drill, existing: existing?.manifest.id ?? null, removed, running: null, slot: slot.toISOString(), taken}
}

/** How long after a drill the `drill.every` setting waits before the next one. */
const DRILL_INTERVAL_MS = {daily: 86_400_000, weekly: 7 * 86_400_000} as const

/**
 * Drills the newest scheduled backup unless it has a receipt already: run hourly, a tick drills each
 * night's backup once, and a drill that could not run (the machine was off) is made up by the next tick.
 * With `every` (the config's `drill.every`), only once that long has passed since the environment's
 * newest drill.
 */
async function drillNewestScheduled(
  context: BackupContext,
  every?: keyof typeof DRILL_INTERVAL_MS,
): Promise<DrillResult | null> {
  const catalog = await catalogOf(context)
  const newest = catalog.complete.find(({manifest}) => manifest.trigger === 'scheduled')
  if (newest === undefined || (newest.receipts?.length ?? 0) > 0) return null
  if (every !== undefined) {
    const drilled = [...(await lastDrills(context, catalog)).values()].map(({endedAt}) => Date.parse(endedAt))
    if (drilled.some((endedAt) => context.now().getTime() - endedAt < DRILL_INTERVAL_MS[every])) return null
  }

  return drillBackup(context, {reference: newest.manifest.id})
}
