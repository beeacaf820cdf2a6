import {Args, Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderDrill} from '../../../cli/render-status.js'
import {drillFailure} from '../../../proof/receipt.js'
import {DrillResult} from '../../../services/drill.js'

export type DrillCommandResult = DrillResult

export default class Drill extends BackupCommand {
  static override args = {
    id: Args.string({
      default: 'latest',
      description: 'Backup id (or a unique prefix of it), or "latest" (the default).',
    }),
  }
  static override description = `Prove that a backup restores: restore it into scratch, check it, and store a signed receipt.

The database is restored into scratch, never the environment's own: a temp file for SQLite, a throwaway server that the drill starts and always stops for PostgreSQL and MariaDB. It is checked by the engine (integrity_check, pg_amcheck, mariadb-check), and its row counts and schema are compared with those recorded when the backup was taken; the query in the config's "drill" setting must return a value. The media is restored into scratch as restore writes it, every file checked as it is written, then read back from disk. The receipt, pass or fail, is signed with this machine's writer key and stored beside the backup; list and info show it. A failed drill exits 4 and names what differed. The scratch files are removed on every exit path.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'Drill the newest backup.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa --media-sample 10 --json',
      description: 'Drill one backup, reading a tenth of the extracted media back from disk, with the receipt as JSON.',
    },
  ]
  static override flags = {
    'media-sample': Flags.integer({
      description:
        'Read this percentage of the extracted media files back from disk (each file is checked as it is extracted anyway).',
      max: 100,
      min: 1,
    }),
    'scratch-url': Flags.string({
      description:
        "PostgreSQL or MariaDB: restore into this database of your own (it is replaced; never the environment's) instead of a server the drill starts.",
    }),
  }

  async run(): Promise<DrillCommandResult> {
    const {args, flags} = await this.parse(Drill)
    const result = await this.onServiceThread('drill', flags, {
      mediaSamplePercent: flags['media-sample'],
      reference: args.id,
      scratchUrl: flags['scratch-url'],
    })
    if (!this.jsonEnabled()) this.log(renderDrill(result))
    if (result.passed) return result
    const failure = drillFailure(result)
    if (this.jsonEnabled()) {
      process.exitCode = failure.exitCode
      return result
    }

    throw failure
  }
}
