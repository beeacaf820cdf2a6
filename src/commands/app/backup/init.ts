import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderInit} from '../../../cli/render.js'
import {askForSetup} from '../../../cli/terminal.js'
import {BackupError} from '../../../errors.js'
import {initApp, InitResult} from '../../../services/init.js'

export type InitCommandResult = InitResult

export default class Init extends BackupCommand {
  static override description = `Set up backups for this app in one step: write .divio/backups.json, check the store (and make its folder), make the keys if there are none, and print the cron line and the systemd timer for the schedule.

What you do not give is written as it resolves here (the app named after its folder, the database from DATABASE_URL or ./db.sqlite3, the media from MEDIA_ROOT or ./media, the store ./.divio/backups; a variable as a reference, "\${DATABASE_URL}"), with the recipients and the trusted writer: a scheduled tick, which cron or systemd runs without this shell's variables and maybe as another user, then backs up the same, to the same key, or fails saying why. On a terminal, init asks for what the flags leave out.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> --env live --schedule 02:00 --timezone Europe/Zurich',
      description: 'Back up the environment "live" every night at 02:00 Zurich time, into ./.divio/backups.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> --env live --store s3://acme-backups/shop --schedule 02:00',
      description: 'The same into S3 (credentials from the usual AWS variables or profile).',
    },
  ]
  static override flags = {
    app: Flags.string({description: "The app's name in the store (default: the app folder's name)."}),
    force: Flags.boolean({description: 'Replace an existing .divio/backups.json.'}),
    schedule: Flags.string({description: 'The daily time of scheduled backups, 24-hour HH:MM (for example 02:00).'}),
    store: Flags.string({
      description: 'Where backups go: a folder, or s3://bucket/prefix (default: ./.divio/backups).',
    }),
    timezone: Flags.string({
      dependsOn: ['schedule'],
      description: 'The IANA time zone of --schedule (default: UTC).',
    }),
  }

  async run(): Promise<InitCommandResult> {
    const {flags} = await this.parse(Init)
    const setup = this.setup(flags)
    const asked = process.stdin.isTTY && process.stderr.isTTY && !this.jsonEnabled() ? await askForSetup(flags) : flags
    if (asked.timezone !== undefined && asked.schedule === undefined) {
      throw new BackupError('USAGE', '--timezone needs --schedule.', {suggestion: 'Pass --schedule HH:MM as well.'})
    }

    const result = await initApp(setup, {
      app: asked.app,
      environment: asked.env,
      force: flags.force,
      schedule: asked.schedule === undefined ? undefined : {at: asked.schedule, timezone: asked.timezone},
      store: asked.store,
    })
    this.log(renderInit(result))
    return result
  }
}
