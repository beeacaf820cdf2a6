import {Args, Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {outputFolder} from '../../../cli/output-folder.js'
import {renderFiles} from '../../../cli/render.js'
import {FilesResult} from '../../../services/download.js'

export type DownloadResult = FilesResult

export default class Download extends BackupCommand {
  static override args = {
    id: Args.string({default: 'latest', description: 'Backup id (or a unique prefix of it), or "latest".'}),
  }
  static override description = `Decrypt and verify a backup into standard files.

Writes database.sqlite3 / database.dump / database.sql, media.tar and manifest.json. Everything is authenticated and checked against the manifest in a staging folder before it is moved into place; existing files are never overwritten.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'Decrypt and check the newest backup into ./backup-<backup id>/.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> latest -o ./restore-check --db-only',
      description: 'Fetch only the database of the newest backup into ./restore-check.',
    },
  ]
  static override flags = {
    'db-only': Flags.boolean({description: 'Download only the database.', exclusive: ['media-only']}),
    'media-only': Flags.boolean({description: 'Download only the media archive.', exclusive: ['db-only']}),
    output: Flags.string({char: 'o', description: 'Folder to write into (default: ./backup-<id>).'}),
  }

  async run(): Promise<DownloadResult> {
    const {args, flags} = await this.parse(Download)
    const result = await this.onServiceThread('download', flags, {
      cwd: process.cwd(),
      database: !flags['media-only'],
      media: !flags['db-only'],
      outputDir: outputFolder(flags.output),
      reference: args.id,
    })
    this.log(renderFiles(result))
    return result
  }
}
