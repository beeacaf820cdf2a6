import {Args, Flags} from '@oclif/core'

import {BackupCommand} from '../../../cli/base-command.js'
import {renderUrls} from '../../../cli/render.js'
import {BackupUrls, backupUrls, MAX_URL_SECONDS} from '../../../services/url.js'

export type UrlResult = BackupUrls

export default class Url extends BackupCommand {
  static override args = {
    id: Args.string({
      default: 'latest',
      description: 'Backup id (or a unique prefix of it), or "latest" (the default).',
    }),
  }
  static override description = `Print a time-limited HTTPS link to each stored object of a backup (S3 stores only).

The links need no credentials: anyone who has one can fetch that object until it expires. The objects stay encrypted, so what they fetch opens only with the identity: \`curl -s URL | age -d -i IDENTITY > database.dump\`. A local store has no links; read its files directly.`
  static override examples = [
    {
      command: '<%= config.bin %> <%= command.id %>',
      description: 'Links to the newest backup, valid for one hour.',
    },
    {
      command: '<%= config.bin %> <%= command.id %> 20261128T020000Z-k3m9qa -e live --expires 600 --json',
      description: 'Links valid for ten minutes, as JSON, for a script that fetches them.',
    },
  ]
  static override flags = {
    expires: Flags.integer({
      default: 3600,
      description: `How long the links stay valid, in seconds (at most ${MAX_URL_SECONDS}, seven days).`,
      max: MAX_URL_SECONDS,
      min: 1,
    }),
  }

  async run(): Promise<UrlResult> {
    const {args, flags} = await this.parse(Url)
    const urls = await backupUrls(await this.context(flags), args.id, {expiresInSeconds: flags.expires})
    this.log(renderUrls(urls))
    return urls
  }
}
