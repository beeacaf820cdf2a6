import {ResolvedEnvironment} from '../config/load.js'
import {isPacked, Manifest} from '../domain/manifest.js'
import {MediaFormat, StoredMedia} from './port.js'

// Each format is loaded when a backup of it is met: a command that reads or writes tar-format media
// never loads the incremental engine (about a fifth of a command's start-up), and the reverse.

/** The format new backups of an environment store their media in (its config's `mediaFormat`). */
export async function chooseMediaFormat(env: Pick<ResolvedEnvironment, 'mediaFormat'>): Promise<MediaFormat> {
  return env.mediaFormat === 'packs'
    ? (await import('./packs/format.js')).packsFormat
    : (await import('./tar/format.js')).tarFormat
}

/** A backup's media, through the port of the format it was stored in; undefined when it has none. */
export async function storedMedia(manifest: Manifest): Promise<StoredMedia | undefined> {
  const {media} = manifest.components
  if (media === undefined) return undefined
  return isPacked(media)
    ? (await import('./packs/format.js')).storedPacks(manifest, media)
    : (await import('./tar/format.js')).storedTar(manifest, media)
}
