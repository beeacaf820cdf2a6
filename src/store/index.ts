import {redactDsn, StoreLocation} from '../config/dsn.js'
import {isInside} from '../lib/paths.js'
import {LocalStore} from './local.js'
import {Store, StoreCallOptions} from './port.js'
import {S3Store} from './s3.js'

/**
 * The store at `location`. A local store inside `appFolder` (the default `.divio/backups`) is made by
 * the first backup; anywhere else its folder must exist (see LocalStoreOptions.createRoot). Either
 * store ends every call with the command, and fails one that stalls (StoreCallOptions).
 */
export function openStore(location: StoreLocation, appFolder: string, options: StoreCallOptions = {}): Store {
  switch (location.kind) {
    case 'local': {
      return new LocalStore(location.path, {...options, createRoot: isInside(location.path, appFolder)})
    }

    case 's3': {
      return new S3Store(location.location, redactDsn(location.url.href), options)
    }
  }
}
