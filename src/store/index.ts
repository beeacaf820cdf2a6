import {StoreLocation} from '../config/dsn.js'
import {BackupError} from '../errors.js'
import {LocalStore} from './local.js'
import {Store} from './port.js'

export function openStore(location: StoreLocation): Store {
  switch (location.kind) {
    case 'local': {
      return new LocalStore(location.path)
    }

    case 's3': {
      throw new BackupError('CONFIG_INVALID', 'S3 stores are not available in this version.', {
        suggestion: 'Use a local folder for "store" for now.',
      })
    }
  }
}
