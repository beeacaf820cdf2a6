import {Args} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderInfo} from '../../../cli/render.js'
import {BackupInfo, backupInfo} from '../../../services/info.js'

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
    const info = await backupInfo(await this.context(flags), args.id)
    this.log(renderInfo(info, {verbose: flags.verbose}))
    return info
  }
}
