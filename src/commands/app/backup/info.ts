import {Args} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {colourFor} from '../../../cli/calendar.js'
import {renderInfo} from '../../../cli/render.js'
import {BackupInfo, inspectBackup} from '../../../services/info.js'

export type InfoResult = BackupInfo

export default class Info extends BackupCommand {
  static override args = {
    id: Args.string({
      default: 'latest',
      description: 'Backup id (or a unique prefix of it), or "latest" (the default).',
    }),
  }
  static override description =
    'Show one backup: components, sizes, checksums, encryption recipients, storage and retention.'
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'Show the newest backup: components, sizes, checksums, writer and retention.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa --json',
      description: 'Show one backup as JSON.',
    },
  ]

  async run(): Promise<InfoResult> {
    const {args, flags} = await this.parse(Info)
    const context = await this.context(flags)
    const {info, siblings} = await inspectBackup(context, args.id)
    const calendar = {
      colour: colourFor(process.stdout, process.env, flags.color),
      lastDay: context.now().toISOString().slice(0, 10),
      siblings,
    }
    this.log(renderInfo(info, {calendar, verbose: flags.verbose}))
    return info
  }
}
