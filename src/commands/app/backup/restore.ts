import {Args, Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderRestored} from '../../../cli/render.js'
import {confirmEnvironment} from '../../../cli/terminal.js'
import {RestoreResult} from '../../../services/restore.js'

export type RestoreCommandResult = RestoreResult

export default class Restore extends BackupCommand {
  static override args = {
    id: Args.string({description: 'Backup id (or a unique prefix of it), or "latest".', required: true}),
  }
  static override description = `Restore a backup into its own environment or another one.

The backup's manifest must be signed by a trusted writer (see --trust-writer). The backup is downloaded, decrypted and checked in a staging folder first; a damaged backup stops there. Then the target environment is named and must be confirmed: by typing its name on a terminal, or with --confirm ENV. Before anything is overwritten, a safety backup of the target is taken (on-demand, note "before restore of ID").

PostgreSQL is restored in one transaction, SQLite files and media folders are swapped in with an atomic rename, and S3 media is uploaded (objects the backup does not hold are deleted only with --clean). MySQL/MariaDB stops at the first error. The database then holds the backup's tables: those added since (by a migration) are dropped.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> latest -e live --to-env test --confirm test',
      description: 'Copy the newest live backup into test.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa --db-only',
      description: 'Put the database of an older backup back in place (asks for the environment name).',
    },
  ]
  static override flags = {
    'allow-rollback': Flags.boolean({
      description:
        'Restore "latest" although the store shows less than this machine has seen (its newest backup gone or older): the store may have been rolled back.',
    }),
    clean: Flags.boolean({
      description: 'S3 media: delete objects under the prefix that the backup does not hold (never an archived one).',
    }),
    confirm: Flags.string({description: 'Confirm without a prompt by naming the target environment.'}),
    'db-only': Flags.boolean({description: 'Restore only the database.', exclusive: ['media-only']}),
    'media-only': Flags.boolean({description: 'Restore only the media.', exclusive: ['db-only']}),
    'safety-backup': Flags.boolean({
      allowNo: true,
      default: true,
      description: 'Back up the target before overwriting it (--no-safety-backup to skip).',
    }),
    'to-env': Flags.string({description: 'Environment to restore into (default: the backup’s own, --env).'}),
    'trust-writer': Flags.string({
      description:
        'Accept a backup signed by this writer id although it is not a trusted writer ("unsigned" for backups made before signing). Repeatable.',
      multiple: true,
      multipleNonGreedy: true,
    }),
  }

  async run(): Promise<RestoreCommandResult> {
    const {args, flags} = await this.parse(Restore)
    const result = await this.onServiceThread(
      'restore',
      flags,
      {
        allowRollback: flags['allow-rollback'],
        clean: flags.clean,
        confirm: flags.confirm,
        database: !flags['media-only'],
        media: !flags['db-only'],
        prompt: flags.confirm === undefined && process.stdin.isTTY === true && process.stderr.isTTY === true,
        reference: args.id,
        safetyBackup: flags['safety-backup'],
        toEnvironment: flags['to-env'],
        trustWriters: flags['trust-writer'] ?? [],
      },
      confirmEnvironment,
    )
    this.log(renderRestored(result))
    return result
  }
}
