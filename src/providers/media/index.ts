import {MediaSource, redactDsn} from '../../config/dsn.js'
import {BackupError} from '../../errors.js'
import {FilesystemMediaProvider} from './filesystem.js'
import {MediaProvider} from './port.js'

export function mediaProviderFor(source: MediaSource): MediaProvider {
  switch (source.kind) {
    case 'filesystem': {
      return new FilesystemMediaProvider(source.path)
    }

    case 's3': {
      throw new BackupError(
        'CONFIG_INVALID',
        `Media in S3 (${redactDsn(source.url.href)}) is not supported by this version.`,
        {
          suggestion: 'Use a media folder for now, or back up the database only with --db-only.',
        },
      )
    }
  }
}
