import {MediaEntry} from '../../archive/media-tar.js'

/**
 * Enumerates an app's media files. Contract:
 * - `entries` yields every folder, file and symlink exactly once, parents before children, in a
 *   deterministic order; paths are `/`-separated and relative to the media root.
 * - A file that disappears between listing and reading is skipped, not an error: it was deleted by the
 *   app while the backup ran. Anything else that cannot be read fails the backup.
 * - `entries` rejects with a BackupError (SOURCE_UNAVAILABLE) when the root itself cannot be read.
 */
export interface MediaProvider {
  entries(options: {onSkip?: (path: string, why: string) => void; signal: AbortSignal}): AsyncIterable<MediaEntry>
  readonly kind: 'filesystem' | 's3'
  /** The location, without credentials, for messages. */
  readonly location: string
}
