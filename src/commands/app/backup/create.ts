import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderCreated} from '../../../cli/render.js'
import {TakeBackupResult} from '../../../services/create.js'

export type CreateResult = TakeBackupResult

export default class Create extends BackupCommand {
  static override description = `Take a backup of the environment's database and media now.

Each component is streamed through SHA-256, age encryption and into the store; the manifest is written last, so a backup that fails or is interrupted never appears as complete. After a successful backup, the retention policy of its trigger (on-demand or scheduled) is applied, and every removal is printed with its reason.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'Back up the database and the media of the default environment.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --note "before the 2.0 migration"',
      description: 'Back up live, with a note that info shows (and list --json).',
    },
    {
      command: '<%= config.bin %> <%= command.id %> --db-only --json',
      description: 'Back up only the database, and print the backup as JSON.',
    },
  ]
  static override flags = {
    'db-only': Flags.boolean({description: 'Back up only the database.', exclusive: ['media-only']}),
    'media-only': Flags.boolean({description: 'Back up only the media files.', exclusive: ['db-only']}),
    note: Flags.string({description: 'A note stored with the backup.'}),
    notify: Flags.boolean({
      description:
        "Tell the environment's notification hooks (config notify) of the start and the outcome; schedule run always does.",
    }),
    scheduled: Flags.boolean({
      description: 'Take a scheduled backup (what `schedule run` takes), kept by the scheduled policy.',
    }),
  }

  async run(): Promise<CreateResult> {
    const {flags} = await this.parse(Create)
    const context = await this.context(flags)
    const result = await this.onServiceThread('create', flags, {
      database: !flags['media-only'],
      media: !flags['db-only'],
      note: flags.note,
      notify: flags.notify,
      trigger: flags.scheduled ? 'scheduled' : 'on-demand',
    })
    this.log(renderCreated(result, context.store.description))
    return result
  }
}
