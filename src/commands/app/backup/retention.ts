import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {colourFor} from '../../../cli/calendar.js'
import {renderRetention} from '../../../cli/render.js'
import {describeRetention, RetentionReport} from '../../../services/policy.js'

export type RetentionCommandResult = RetentionReport

export default class Retention extends BackupCommand {
  static override description = `Show the environment's retention policies in words.

With --simulate DAYS, also show what a daily schedule would hold after DAYS days, by tier and date.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: "Describe the environment's retention policies in words.",
    },
    {
      command: '<%= config.bin %> <%= command.id %> --simulate 400',
      description: 'Show which backups a daily schedule would hold after 400 days.',
    },
  ]
  static override flags = {
    simulate: Flags.integer({description: 'Simulate a daily schedule for this many days.', max: 36_600, min: 1}),
  }

  async run(): Promise<RetentionCommandResult> {
    const {flags} = await this.parse(Retention)
    const context = await this.context(flags)
    const report = describeRetention(context, flags.simulate)
    this.log(renderRetention(report, {colour: colourFor(process.stdout, process.env, flags.color)}))
    return report
  }
}
