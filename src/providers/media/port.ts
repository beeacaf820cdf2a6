import {Readable} from 'node:stream'

import {ExtractSummary} from '../../archive/extract.js'
import {MediaEntry} from '../../archive/media-tar.js'

export interface MediaRestoreSummary {
  /** Objects the archive does not hold that `clean` left in place, since S3 has archived them (S3). */
  archivedKept?: number
  bytes: number
  /** Files that were there before and that the archive does not hold, removed (S3 with `clean`). */
  deleted: number
  files: number
  /** Members of the backup that were not restored, each with the reason (symlinks leading outside). */
  skipped: Array<{path: string; why: string}>
}

/** Media extracted and checked beside its target, waiting to be swapped in. */
export interface PreparedMediaRestore {
  /** Swaps the prepared media in; the previous media is gone afterwards. */
  commit(): Promise<MediaRestoreSummary>
  /** Removes what was prepared; the target was never touched. Safe to call more than once. */
  discard(): Promise<void>
}

export interface EntriesOptions {
  /**
   * Asked once for each file, in the order of the listing, before the provider reads it ahead of
   * `open`: a file for which it resolves false is read only if it is opened. An incremental backup
   * answers false for what it will not read (an unchanged S3 object is then never downloaded). The
   * answer comes as a promise only when it has to wait: most come at once, and a promise a file costs.
   */
  needsContent?: (entry: MediaEntry) => boolean | Promise<boolean>
  onSkip?: (path: string, why: string) => void
  /** An entry that is backed up, but that the user should know about (a symlink that restore leaves out). */
  onWarning?: (path: string, what: string) => void
  signal: AbortSignal
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
  entries(options: EntriesOptions): AsyncIterable<MediaEntry>
  /**
   * The approximate size of the archive that `entries` makes, from a walk that reads no content (for
   * progress only; may be off when the tree changes). Absent where that costs more than it helps.
   */
  estimateArchiveBytes?(signal: AbortSignal): Promise<number>
  /**
   * A hint, before `entries`: the walk will find about `count` entries (the previous backup's files).
   * A provider whose walk needs a thread of its own for a large tree starts it now.
   */
  expectEntries?(count: number): void
  readonly kind: 'filesystem' | 's3'
  /** The location, without credentials, for messages. */
  readonly location: string
  /**
   * Where the target allows it (a folder), does all the work of a restore but the final swap: `fill`
   * writes the media, checked, into a new folder beside the target (it must create it: extract.ts does),
   * and the target is not touched. A refused or damaged backup rejects here, so that nothing (not even a
   * safety backup) happens before it is known good.
   */
  prepare?(
    fill: (folder: string) => Promise<ExtractSummary>,
    options?: {signal?: AbortSignal},
  ): Promise<PreparedMediaRestore>
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
