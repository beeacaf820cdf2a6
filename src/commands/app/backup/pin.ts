import {Args} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {setPinned, PinResult as SetPinnedResult} from '../../../services/pin.js'

export type PinResult = SetPinnedResult

export default class Pin extends BackupCommand {
  static override args = {
    id: Args.string({description: 'Backup id (or a unique prefix of it), or "latest".', required: true}),
  }
  static override description = 'Pin a backup: it is kept whatever the retention policy says, and takes no slot of it.'
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> latest',
      description: 'Keep the newest backup whatever the retention policy says.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa -e live',
      description: 'Keep one backup of live.',
    },
  ]

  async run(): Promise<PinResult> {
    const {args, flags} = await this.parse(Pin)
    const view = await setPinned(await this.context(flags), args.id, true)
    this.log(
      view.changed
        ? `Pinned backup ${view.id}: it is kept until you unpin it.`
        : `Backup ${view.id} is already pinned: it is kept until you unpin it.`,
    )
    return view
  }
}
