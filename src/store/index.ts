import {redactDsn, StoreLocation} from '../config/dsn.js'
import {LocalStore} from './local.js'
import {Store} from './port.js'
import {S3Store} from './s3.js'

export function openStore(location: StoreLocation): Store {
  switch (location.kind) {
    case 'local': {
      return new LocalStore(location.path)
    }

    case 's3': {
      return new S3Store(location.location, redactDsn(location.url.href))
    }
  }
}
