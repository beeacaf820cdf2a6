import {BackupCommand} from '../../../../cli/base-command.js'
import {formatInZone} from '../../../../domain/schedule.js'
import {ScheduleInfo, scheduleInfo} from '../../../../services/schedule.js'

export type ScheduleShowResult = ScheduleInfo

export default class ScheduleShow extends BackupCommand {
  static override description =
    "Show the environment's backup schedule and its next run, in the schedule's time zone and in UTC."
  static override examples = ['<%= config.bin %> <%= command.id %> -e live']

  async run(): Promise<ScheduleShowResult> {
    const {flags} = await this.parse(ScheduleShow)
    const info = scheduleInfo(await this.context(flags))
    const next = new Date(info.nextRun)
    this.log(`Daily at ${info.at} (${info.timezone}).`)
    this.log(`Next run: ${formatInZone(next, info.timezone)} = ${formatInZone(next, 'UTC')}.`)
    return info
  }
}
