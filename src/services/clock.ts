import {clockProblem} from '../domain/clock-check.js'
import {BackupError} from '../errors.js'
import {Catalog} from './catalog.js'
import {BackupContext} from './context.js'

const SET_THE_CLOCK =
  "Set this machine's clock right (`timedatectl status` shows it and whether it is synchronised; chrony or systemd-timesyncd keep it so), then run the command again. If a backup's time is wrong instead (made on a machine whose clock was ahead), delete that backup by hand with `divio app backup delete ID`; an S3-compatible server of your own keeps a clock of its own, which may be the one that is off."

/**
 * Why this machine's clock cannot be trusted with the environment that `catalog` lists, or undefined
 * (domain/clock-check.ts). `justStored`: the id of the backup this command has just committed, whose
 * time in the store is the store's "now".
 */
export function clockDoubt(
  context: Pick<BackupContext, 'now' | 'store' | 'systemClock'>,
  catalog: Catalog,
  justStored?: string,
): string | undefined {
  const [newest] = catalog.complete
  const stamped = justStored === undefined ? undefined : catalog.storedAt.get(justStored)
  const times = [...catalog.storedAt.values()].map((time) => time.getTime())
  const storeClock = context.systemClock === true && context.store.ownClock === true
  return clockProblem({
    newestBackup: newest && {createdAt: newest.manifest.createdAt, id: newest.manifest.id},
    now: context.now(),
    store: storeClock
      ? {
          justStored: stamped && {at: stamped, what: `backup ${justStored}`},
          newest: times.length > 0 ? new Date(Math.max(...times)) : undefined,
          now: context.store.serverTime?.(),
        }
      : undefined,
  })
}

/**
 * Refuses what the clock would decide, when the clock cannot be trusted: `refusal` says what was not
 * done ("Prune removed nothing"). Exit 1, with what to check.
 */
export function assertClockTrusted(
  context: Pick<BackupContext, 'now' | 'store' | 'systemClock'>,
  catalog: Catalog,
  refusal: string,
  justStored?: string,
): void {
  const problem = clockDoubt(context, catalog, justStored)
  if (problem !== undefined) throw untrustedClock(refusal, problem)
}

/** The error of a refusal for `problem` (clockDoubt's). */
export function untrustedClock(refusal: string, problem: string): BackupError {
  return new BackupError('CLOCK_UNTRUSTED', `${refusal}: ${problem}.`, {suggestion: SET_THE_CLOCK})
}
