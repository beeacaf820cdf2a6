import {Readable} from 'node:stream'

import {MediaEntry} from '../../archive/media-tar.js'

export interface MediaRestoreSummary {
  bytes: number
  /** Files that were there before and that the archive does not hold, removed (S3 with `clean`). */
  deleted: number
  files: number
}

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
  /**
   * Puts the media of an archive (as createMediaTar writes it) in place, checked against its listing.
   * A folder is replaced whole by an atomic swap, so a failure before the swap leaves it as it was;
   * a bucket gets every object uploaded, and objects the archive does not hold are deleted only with
   * `clean`. Rejects with a BackupError that says what, if anything, was changed.
   */
  restore(
    tar: Readable,
    options: {clean?: boolean; onSkip?: (path: string, why: string) => void; signal?: AbortSignal},
  ): Promise<MediaRestoreSummary>
}
