import {Args} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {setPinned, PinResult as SetPinnedResult} from '../../../services/pin.js'

export type UnpinResult = SetPinnedResult

export default class Unpin extends BackupCommand {
  static override args = {
    id: Args.string({description: 'Backup id (or a unique prefix of it), or "latest".', required: true}),
  }
  static override description = 'Unpin a backup: the retention policy decides about it again (see the reason shown).'
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa',
      description: 'Let the retention policy decide about this backup again.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> latest -e live',
      description: 'Unpin the newest backup of live.',
    },
  ]

  async run(): Promise<UnpinResult> {
    const {args, flags} = await this.parse(Unpin)
    const view = await setPinned(await this.context(flags), args.id, false)
    const fate = `${view.retention.keep ? 'kept' : 'the next prune removes it'} (${view.retention.reason})`
    this.log(view.changed ? `Unpinned backup ${view.id}: ${fate}.` : `Backup ${view.id} was not pinned: ${fate}.`)
    return view
  }
}
