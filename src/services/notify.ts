import {BackupError} from '../errors.js'
import {fireHooks, HookBody, HookEvent, hookLimits, HookOutcome} from '../proof/hooks.js'
import {BackupContext} from './context.js'

/**
 * Runs `work` between the environment's hooks: `start` before, then `success` or `failure` (and
 * `drill-failed` when `drillFailed` says so of the result). The hooks' outcomes come back beside the
 * result; one that failed is also said on stderr. Nothing a hook does changes the result or the error:
 * a failing hook never fails a backup, and a failed backup fails however its hooks fare.
 */
export async function withHooks<T>(
  context: BackupContext,
  work: () => Promise<T>,
  describe: (result: T) => {backup: unknown; drill?: HookBody['drill']; drillFailed?: boolean},
): Promise<{notifications: HookOutcome[]; result: T}> {
  const {notify} = context.env
  if (notify === undefined) return {notifications: [], result: await work()}
  const notifications: HookOutcome[] = []
  const fire = async (event: HookEvent, extra: Partial<HookBody> = {}) => {
    const outcomes = await fireHooks(
      notify,
      {
        app: context.env.app,
        backup: null,
        environment: context.env.name,
        error: null,
        event,
        time: context.now().toISOString(),
        ...extra,
      },
      hookLimits(context.hookTimeoutMs, context.signal),
    )
    for (const outcome of outcomes.filter(({ok}) => !ok)) {
      context.reporter.notice(
        `warning: the ${outcome.event} ${outcome.kind} hook (${outcome.target}) failed after ${outcome.attempts} ${outcome.attempts === 1 ? 'try' : 'tries'}: ${outcome.error}. The backup is not affected.`,
      )
    }

    notifications.push(...outcomes)
  }

  await fire('start')
  let result: T
  try {
    result = await work()
  } catch (error) {
    const {code, message} =
      error instanceof BackupError ? error : {code: 'INTERNAL', message: (error as Error).message ?? String(error)}
    // A run stopped by the user is still a run that did not back up: the ping service should know.
    await fire('failure', {error: {code, message}})
    throw error
  }

  const {backup, drill, drillFailed} = describe(result)
  await fire('success', {backup})
  if (drillFailed) await fire('drill-failed', {backup, drill})
  return {notifications, result}
}
