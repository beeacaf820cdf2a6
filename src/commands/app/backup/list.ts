import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {colourFor} from '../../../cli/calendar.js'
import {renderList} from '../../../cli/render.js'
import {BackupView} from '../../../domain/backup.js'
import {listBackups} from '../../../services/list.js'

export type ListResult = BackupView[]

export default class List extends BackupCommand {
  static override description = `List the environment's backups, newest first, with what retention does with each.

Incomplete backups (never committed, for example because the process was killed) are shown only with --all.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'List the complete backups of the default environment, newest first.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --trigger scheduled',
      description: 'List only the scheduled backups of live.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --all --json',
      description: 'Include incomplete and damaged backups, as JSON.',
    },
  ]
  static override flags = {
    all: Flags.boolean({description: 'Include incomplete backups.'}),
    trigger: Flags.option({
      description: 'Show only backups of this trigger.',
      options: ['on-demand', 'scheduled'] as const,
    })(),
  }

  async run(): Promise<ListResult> {
    const {flags} = await this.parse(List)
    const context = await this.context(flags)
    const views = await listBackups(context, {all: flags.all, hintAtOthers: true, trigger: flags.trigger})
    const unicode = colourFor(process.stdout, process.env, flags.color)
    this.log(renderList(views, {app: context.env.app, environment: context.env.name, unicode}))
    return views
  }
}
