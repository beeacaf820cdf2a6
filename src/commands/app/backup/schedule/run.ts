import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../../cli/base-command.js'
import {renderDrill} from '../../../../cli/render-status.js'
import {renderCreated} from '../../../../cli/render.js'
import {formatInstant} from '../../../../domain/format.js'
import {drillFailure} from '../../../../proof/receipt.js'
import {ScheduleRunResult} from '../../../../services/schedule.js'

export type ScheduleRunCommandResult = ScheduleRunResult

export default class ScheduleRun extends BackupCommand {
  static override description = `One idempotent cron tick: take a scheduled backup if the current slot has none, then apply the scheduled retention policy.

The current slot is the most recent scheduled time at or before now. Run it as often as you like (hourly is a good choice): a tick never takes a second backup for a slot it finds covered. A tick that finds an earlier one still running on this machine (a backup longer than the hour) takes nothing; ticks on two machines can each take one (docs/retention-and-schedules.md).`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> -e live',
      description: 'Take the scheduled backup of live if this slot has none yet, then apply retention (for cron).',
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --json',
      description: 'The same, with the result as JSON.',
    },
  ]
  static override flags = {
    drill: Flags.boolean({
      description:
        'After the tick, drill the newest scheduled backup unless it has a receipt already (see `drill`); a failed drill exits 4.',
    }),
  }

  async run(): Promise<ScheduleRunCommandResult> {
    const {flags} = await this.parse(ScheduleRun)
    const context = await this.context(flags)
    const result = await this.onServiceThread('schedule run', flags, {drill: flags.drill})
    if (result.taken) this.log(renderCreated(result.taken, context.store.description))
    else if (result.running)
      this.log(
        `Nothing to take: the tick that started at ${formatInstant(result.running.since)} (process ${result.running.pid}) is still running on this machine, and takes the slot of ${formatInstant(result.slot)}.`,
      )
    else
      this.log(`Nothing to take: backup ${result.existing} already covers the slot of ${formatInstant(result.slot)}.`)
    for (const {id, reason} of result.removed) this.log(`Retention removed ${id}: ${reason}.`)
    if (result.drill) {
      this.log(renderDrill(result.drill))
      if (!result.drill.passed) {
        const failure = drillFailure(result.drill)
        if (!this.jsonEnabled()) throw failure
        process.exitCode = failure.exitCode
      }
    }

    return result
  }
}
