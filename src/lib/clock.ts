import {BackupError} from '../errors.js'

/**
 * The clock every command uses: DIVIO_BACKUP_NOW (an ISO-8601 instant) when set, else the system clock.
 * The variable exists for retention simulations and tests; it is documented as such in docs/configuration.md.
 */
export function clockFrom(variables: NodeJS.ProcessEnv): () => Date {
  const fixed = variables.DIVIO_BACKUP_NOW
  if (!fixed) return () => new Date()
  const instant = new Date(fixed)
  if (Number.isNaN(instant.getTime()) || !/^\d{4}-\d{2}-\d{2}T/.test(fixed)) {
    throw new BackupError('USAGE', `DIVIO_BACKUP_NOW=${JSON.stringify(fixed)} is not an ISO-8601 instant.`, {
      suggestion: 'Use a form like 2026-11-28T02:00:00Z, or unset it to use the system clock.',
    })
  }

  return () => new Date(instant)
}

/** Whether the commands read the system clock: not a simulation's DIVIO_BACKUP_NOW, which no store's clock agrees with. */
export function isSystemClock(variables: NodeJS.ProcessEnv): boolean {
  return !variables.DIVIO_BACKUP_NOW
}
