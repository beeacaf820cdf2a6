import {BackupCommand} from '../../../../cli/base-command.js'
import {formatInZone} from '../../../../domain/schedule.js'
import {ScheduleInfo, scheduleInfo} from '../../../../services/schedule.js'

export type ScheduleShowResult = ScheduleInfo

export default class ScheduleShow extends BackupCommand {
  static override description =
    "Show the environment's backup schedule and its next run, in the schedule's time zone and in UTC."
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> -e live',
      description: "Show live's schedule and when it next runs.",
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --json',
      description: 'The same, as JSON.',
    },
  ]

  async run(): Promise<ScheduleShowResult> {
    const {flags} = await this.parse(ScheduleShow)
    const info = scheduleInfo(await this.context(flags))
    const next = new Date(info.nextRun)
    this.log(`Daily at ${info.at} (${info.timezone}).`)
    this.log(`Next run: ${formatInZone(next, info.timezone)} = ${formatInZone(next, 'UTC')}.`)
    return info
  }
}
