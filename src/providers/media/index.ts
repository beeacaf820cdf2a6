import {MediaSource, redactDsn} from '../../config/dsn.js'
import {FilesystemMediaProvider} from './filesystem.js'
import {MediaProvider} from './port.js'
import {S3MediaProvider} from './s3.js'

export function mediaProviderFor(source: MediaSource): MediaProvider {
  switch (source.kind) {
    case 'filesystem': {
      return new FilesystemMediaProvider(source.path)
    }

    case 's3': {
      return new S3MediaProvider(source.location, redactDsn(source.url.href), source.archived)
    }
  }
}
