import {setTimeout as sleep} from 'node:timers/promises'

import {formatInstant} from '../domain/format.js'
import {BackupError, ExitCode} from '../errors.js'
import {activityFolder, markActivity, othersDoing, RunningActivity} from '../lib/activity.js'
import {BackupContext} from './context.js'

/** How often a restore that waits for a backup looks again. */
const WAIT_STEP_MS = 1000

/**
 * Runs a backup of the context's environment, marked as such (lib/activity.ts), unless a restore into
 * it runs on this machine: the backup would catch it half-way, old files and new. It fails at once
 * (exit 7); a scheduled tick takes it at its next run.
 */
export async function duringBackup<T>(context: BackupContext, work: () => Promise<T>): Promise<T> {
  const folder = activityFolder(context.env.root, context.env.name)
  const mark = await markActivity(folder, 'backup')
  try {
    const [restore] = await othersDoing(folder, 'restore')
    if (restore !== undefined) {
      throw new BackupError(
        'ENV_BUSY',
        `A restore into ${context.env.app}/${context.env.name} is running on this machine (${describe(restore)}): a backup now would hold part of the old data and part of the new.`,
        {
          exitCode: ExitCode.Unavailable,
          suggestion: 'Take the backup once the restore is done; a scheduled tick takes it at its next run.',
        },
      )
    }

    return await work()
  } finally {
    await mark?.release()
  }
}

/**
 * Runs a restore's changes to the context's environment, marked as such, once no backup of it runs on
 * this machine: one that is walking the media folder would catch the swap half-way. Backups that start
 * meanwhile see the mark and stop; those already running are waited for, until SIGINT/SIGTERM.
 */
export async function duringRestore<T>(context: BackupContext, work: () => Promise<T>): Promise<T> {
  const folder = activityFolder(context.env.root, context.env.name)
  const mark = await markActivity(folder, 'restore')
  try {
    let said = false
    for (let backups = await othersDoing(folder, 'backup'); backups.length > 0;) {
      if (!said) {
        context.reporter.notice(
          `Waiting for the backup of ${context.env.app}/${context.env.name} that is running on this machine (${describe(backups[0])}) to finish: restoring now, it would catch the change half-way.`,
        )
        said = true
      }

      await sleep(WAIT_STEP_MS, undefined, {signal: context.signal})
      backups = await othersDoing(folder, 'backup')
    }

    return await work()
  } finally {
    await mark?.release()
  }
}

/**
 * Runs a scheduled tick of the context's environment, marked as such, unless an earlier tick of it is
 * still running on this machine (its backup takes longer than the hour between ticks): then nothing
 * runs, and that tick is returned. Cron starts a tick every hour whether the last has ended or not, and
 * ticks piling up behind a long backup would each dump the database and read the media again, each
 * slowing the others. Of two ticks started at once, the one marked first runs.
 */
export async function duringTick<T>(
  context: BackupContext,
  work: () => Promise<T>,
): Promise<{earlier: RunningActivity} | {result: T}> {
  const folder = activityFolder(context.env.root, context.env.name)
  const mark = await markActivity(folder, 'tick')
  try {
    // Only a tick seen alive: one of another container may have been killed with its guard, and a tick
    // that took nothing for it would exit 0, hour after hour, with no backup taken.
    const earlier = (await othersDoing(folder, 'tick'))
      .filter(({seenAlive, since}) => seenAlive && mark !== undefined && since < mark.since)
      .sort((a, b) => a.since.getTime() - b.since.getTime())
    if (earlier.length > 0) return {earlier: earlier[0]}
    return {result: await work()}
  } finally {
    await mark?.release()
  }
}

function describe(activity: RunningActivity): string {
  return `process ${activity.pid}, since ${formatInstant(activity.since.toISOString())}`
}
