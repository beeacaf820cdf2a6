import {ResolvedEnvironment} from '../config/load.js'
import {isPacked, Manifest} from '../domain/manifest.js'
import {packsFormat, storedPacks} from './packs/format.js'
import {MediaFormat, StoredMedia} from './port.js'
import {storedTar, tarFormat} from './tar/format.js'

/** The format new backups of an environment store their media in (its config's `mediaFormat`). */
export function chooseMediaFormat(env: Pick<ResolvedEnvironment, 'mediaFormat'>): MediaFormat {
  return env.mediaFormat === 'packs' ? packsFormat : tarFormat
}

/** A backup's media, through the port of the format it was stored in; undefined when it has none. */
export function storedMedia(manifest: Manifest): StoredMedia | undefined {
  const {media} = manifest.components
  if (media === undefined) return undefined
  return isPacked(media) ? storedPacks(manifest, media) : storedTar(manifest, media)
}
