import {Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {outputFolder} from '../../../cli/output-folder.js'
import {renderExport} from '../../../cli/render.js'
import {ExportResult} from '../../../services/export.js'

export type ExportCommandResult = ExportResult

export default class Export extends BackupCommand {
  static override description = `Export backups into standard files, for migrating away.

Each backup goes into DIR/<env>/<id>/ as database.dump / database.sql / database.sqlite3, media.tar and manifest.json, decrypted and verified. DIR/index.json and DIR/SHA256SUMS list every file with its checksum, and DIR/README.txt explains how to restore each kind by hand with pg_restore, mysql, sqlite3 and tar.

With --raw, the encrypted .age objects are exported as stored instead, with instructions for age -d; no secret key is needed.

An interrupted export resumes when run again: files already present and matching their checksum are kept.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %> -o ./shop-export',
      description: 'Decrypt every backup into standard files, with index.json and a README on restoring by hand.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> -e live --latest -o ./shop-latest',
      description: 'Export only the newest backup of live.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> --raw -o ./shop-encrypted',
      description: 'Copy the encrypted objects as they are stored, to decrypt later with age.',
    },
  ]
  static override flags = {
    all: Flags.boolean({description: 'Export every complete backup (the default).', exclusive: ['latest']}),
    latest: Flags.boolean({description: 'Export only the newest complete backup.', exclusive: ['all']}),
    output: Flags.string({char: 'o', description: 'Folder to export into (default: ./divio-export-<app>).'}),
    raw: Flags.boolean({description: 'Export the encrypted objects as stored, instead of decrypted files.'}),
  }

  async run(): Promise<ExportCommandResult> {
    const {flags} = await this.parse(Export)
    const result = await this.onServiceThread('export', flags, {
      cwd: process.cwd(),
      latest: flags.latest,
      outputDir: outputFolder(flags.output),
      raw: flags.raw,
    })
    this.log(renderExport(result))
    return result
  }
}
