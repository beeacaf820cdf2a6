import {Args, Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {confirmEnvironment} from '../../../cli/terminal.js'
import {countOf} from '../../../domain/format.js'
import {BackupError} from '../../../errors.js'
import {deleteBackup, DeleteResult, resolveForDelete} from '../../../services/delete.js'

export type DeleteCommandResult = DeleteResult

export default class Delete extends BackupCommand {
  static override args = {
    id: Args.string({description: 'Backup id (or a unique prefix of it).', required: true}),
  }
  static override description = `Delete one backup: its manifest first, so it stops existing, then its data.

Asks for the environment name to be typed; without a terminal, --confirm ENV is required.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa',
      description: 'Remove one backup (asks for the environment name).',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa -e test --confirm test',
      description: 'Remove a backup of test from a script, without a prompt.',
    },
  ]
  static override flags = {
    confirm: Flags.string({description: 'Confirm without a prompt by naming the environment.'}),
    force: Flags.boolean({
      description: 'Delete a pinned backup with --confirm (a typed confirmation needs no --force).',
    }),
  }

  async run(): Promise<DeleteCommandResult> {
    const {args, flags} = await this.parse(Delete)
    const context = await this.context(flags)
    const target = await resolveForDelete(context, args.id)
    // A pin says "keep this whatever happens": a script's --confirm alone does not overrule it.
    if (target.pinned && flags.confirm !== undefined && !flags.force) {
      throw new BackupError('CONFIRMATION_REQUIRED', `Backup ${target.id} is pinned; nothing was deleted.`, {
        suggestion: `Unpin it first (\`divio app backup unpin ${target.id}\`), or pass --force with --confirm.`,
      })
    }

    if (target.pinned) process.stderr.write(`warning: backup ${target.id} is pinned.\n`)
    await confirmEnvironment({
      action: `delete ${target.pinned ? 'pinned ' : ''}${target.status} backup ${target.id} of ${context.env.app}/${context.env.name}`,
      confirm: flags.confirm,
      environment: context.env.name,
    })
    const result = await deleteBackup(context, target.id)
    this.log(`Deleted backup ${result.id} (${countOf(result.deleted.length, 'object')}).`)
    return result
  }
}
