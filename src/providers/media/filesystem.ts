import {readlink, realpath, stat} from 'node:fs/promises'
import {isAbsolute, posix} from 'node:path'
import {Readable} from 'node:stream'

import {extractMediaArchive, ExtractSummary} from '../../archive/extract.js'
import {CHANGED_WHILE_RUNNING, listedIdentity, MediaEntry} from '../../archive/media-tar.js'
import {BackupError} from '../../errors.js'
import {decodeName, encodeName, isUtf8Name, printableName} from '../../lib/byte-names.js'
import {expectWalk} from '../../lib/file-reader-route.js'
import {EntryKind, ListedFolder, listFolder, SmallFileReader} from '../../lib/file-reader.js'
import {FileIdentity} from '../../lib/listed-files.js'
import {isRestoreWorkFolder, mediaMovedAside, prepareFolderRestore} from './folder-restore.js'
import {EntriesOptions, MediaProvider, MediaRestoreSummary, PreparedMediaRestore} from './port.js'

/** Media in a folder: nested folders, any file names, empty files, and symlinks kept as symlinks. */
/** A tar header block, and the two zero blocks that end an archive: enough for an estimate. */
const TAR_HEADER_BYTES = 512
const TAR_END_BYTES = 1024

export class FilesystemMediaProvider implements MediaProvider {
  readonly kind = 'filesystem'
  readonly location: string
  private realRoot: string | undefined
  private readonly rootPrefix: Buffer

  constructor(private readonly root: string) {
    this.location = root
    this.rootPrefix = Buffer.from(`${root}/`)
  }

  async *entries({needsContent, onSkip, onWarning, signal}: EntriesOptions): AsyncIterable<MediaEntry> {
    // Followed: a media folder may be a link to where it lives (a volume).
    const info = await stat(this.root).catch(() => {})
    if (!info?.isDirectory()) {
      const asideByRestore = info === undefined ? await mediaMovedAside(this.root) : undefined
      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        asideByRestore
          ? `The media folder ${this.root} does not exist: a restore moved it aside to ${asideByRestore} and stopped before the new one took its place (the machine went down).`
          : `The media folder ${this.root} does not exist.`,
        {
          suggestion: asideByRestore
            ? `Rename ${asideByRestore} back to ${this.root}, then run the restore again if you still want it.`
            : 'Check MEDIA_ROOT (or "media" in the config), or use --db-only.',
        },
      )
    }

    yield* readAhead(this.walk(signal, onSkip, onWarning), needsContent)
  }

  async estimateArchiveBytes(signal: AbortSignal): Promise<number> {
    let bytes = TAR_END_BYTES
    for await (const entry of this.walk(signal)) bytes += TAR_HEADER_BYTES + Math.ceil(entry.size / 512) * 512
    return bytes
  }

  expectEntries(count: number): void {
    expectWalk(count)
  }

  /** Extracts and checks the archive into a new folder, to be swapped in: see folder-restore.ts. */
  async prepare(
    fill: (folder: string) => Promise<ExtractSummary>,
    options: {signal?: AbortSignal} = {},
  ): Promise<PreparedMediaRestore> {
    return prepareFolderRestore(this.root, fill, options)
  }

  /**
   * Extracts the archive into a new folder, swaps it in and removes the old media (folder-restore.ts).
   * Until the swap the media folder is untouched; a symlinked media folder keeps its link, and the
   * folder it points to is the one replaced.
   */
  async restore(tar: Readable, options: {signal?: AbortSignal} = {}): Promise<MediaRestoreSummary> {
    return (await this.prepare((folder) => extractMediaArchive(tar, folder, options), options)).commit()
  }

  /**
   * Whether a link would be left out by restore: its target is absolute, climbs above the media folder,
   * or resolves outside it through other links (checked with realpath while the link exists).
   */
  private async leadsOutside(path: string, target: string): Promise<boolean> {
    if (isAbsolute(target)) return true
    const lexical = posix.normalize(posix.join(posix.dirname(path), target))
    if (lexical === '..' || lexical.startsWith('../')) return true
    const real = await realpath(this.pathOf(path), {encoding: 'buffer'}).catch(() => {})
    if (real === undefined) return false
    this.realRoot ??= await realpath(this.root).catch(() => this.root)
    const inside = Buffer.from(`${this.realRoot}/`)
    return !(real.equals(Buffer.from(this.realRoot)) || real.subarray(0, inside.length).equals(inside))
  }

  /**
   * A folder as the walk enters it: listed with each name's lstat on the reader thread (a hung mount
   * blocks that thread, never this one, so the stall watchdog and SIGTERM still work), its names as
   * strings (byte-names.ts) in the order walkOrder() expects, and its subfolders told to `ahead`.
   * Memory follows the widest folders, not the whole tree.
   */
  private async openFolder(relative: string, walk: WalkState): Promise<FolderInWalk> {
    walk.signal.throwIfAborted()
    let listed = await walk.ahead.take(relative)
    if (listed === undefined) {
      walk.onSkip?.(relative, CHANGED_WHILE_RUNNING)
      listed = NOTHING_LISTED
    }

    const names = Array.from({length: listed.count}, (_, index) => decodeName(listed.name(index)))
    // A restore's work folders at the top of a media folder that is a mount point are not media.
    const kept =
      relative === '' ? [...names.keys()].filter((index) => !isRestoreWorkFolder(names[index])) : names.keys()
    const order = Uint32Array.from(kept).sort((one, other) =>
      names[one] < names[other] ? -1 : names[one] > names[other] ? 1 : 0,
    )
    const subfolders: string[] = []
    for (const index of order) {
      const {dev, ino, kind} = listed.info(index)
      if (kind === EntryKind.Directory) {
        const subfolder = relative === '' ? names[index] : `${relative}/${names[index]}`
        subfolders.push(subfolder)
        walk.listedFolders.set(subfolder, {dev, ino})
      }
    }

    walk.ahead.enter(subfolders)
    return {listed, names, next: 0, order, relative}
  }

  /**
   * The file system path of a media path (byte-names.ts form): a string when the name is UTF-8, as
   * nearly all are, and bytes otherwise. Made for every file of every backup: two buffers a file, from
   * Node.js's shared pool of small buffers, kept whole pool slabs alive while the file waited in the
   * read-ahead window.
   */
  private pathOf(relative: string): Buffer | string {
    if (relative === '') return this.root
    return isUtf8Name(relative) ? `${this.root}/${relative}` : Buffer.concat([this.rootPrefix, encodeName(relative)])
  }

  /**
   * Every entry under the media folder, depth first, each folder's names in walkOrder().
   *
   * @yields each folder, file and symlink, a folder right before its contents
   */
  private async *walk(
    signal: AbortSignal,
    onSkip?: (path: string, why: string) => void,
    onWarning?: (path: string, what: string) => void,
  ): AsyncIterable<MediaEntry> {
    // A folder is listed only if it is still the one its parent's listing named (listed-files.ts).
    const listedFolders = new Map<string, FileIdentity>()
    const ahead = new FoldersAhead((folder) => {
      const expected = listedFolders.get(folder)
      listedFolders.delete(folder)
      return listFolder(this.pathOf(folder), undefined, expected)
    })
    const state: WalkState = {ahead, listedFolders, onSkip, signal}
    // One generator and a stack of the folders being walked, rather than a generator a folder: each
    // entry would otherwise pass through a generator of every folder above it, a promise at each.
    const walking = [await this.openFolder('', state)]
    for (let folder = walking.at(-1); folder !== undefined; folder = walking.at(-1)) {
      if (folder.next === folder.order.length) {
        walking.pop()
        ahead.leave()
        continue
      }

      const index = folder.order[folder.next++]
      const name = folder.names[index]
      const info = folder.listed.info(index)
      const path = folder.relative === '' ? name : `${folder.relative}/${name}`
      switch (info.kind) {
        case EntryKind.Directory: {
          yield {
            ctimeMs: info.ctimeMs,
            ino: info.ino,
            mode: info.mode,
            mtime: new Date(info.mtimeMs),
            path,
            size: 0,
            type: 'directory',
          }
          walking.push(await this.openFolder(path, state))
          break
        }

        case EntryKind.File: {
          yield {
            ctimeMs: info.ctimeMs,
            dev: info.dev,
            ino: info.ino,
            localPath: this.pathOf(path),
            mode: info.mode,
            mtime: new Date(info.mtimeMs),
            path,
            size: info.size,
            type: 'file',
          }
          break
        }

        case EntryKind.Gone: {
          onSkip?.(path, CHANGED_WHILE_RUNNING)
          break
        }

        case EntryKind.Symlink: {
          const absolute = this.pathOf(path)
          const linkTarget = decodeName(await readlink(absolute, {encoding: 'buffer'}))
          if (onWarning && (await this.leadsOutside(path, linkTarget))) {
            onWarning(
              path,
              `is a symlink to ${JSON.stringify(printableName(linkTarget))}, outside the media folder: the backup keeps the link, and restore leaves it out`,
            )
          }

          yield {
            ctimeMs: info.ctimeMs,
            ino: info.ino,
            linkTarget,
            mode: info.mode,
            mtime: new Date(info.mtimeMs),
            path,
            size: 0,
            type: 'symlink',
          }
          break
        }

        default: {
          onSkip?.(path, 'not a regular file, folder or symlink')
        }
      }
    }
  }
}

/** What a walk carries from folder to folder. */
interface WalkState {
  ahead: FoldersAhead<ListedFolder | undefined>
  /** The device and inode of each subfolder listed and not yet entered, from its parent's listing. */
  listedFolders: Map<string, FileIdentity>
  onSkip?: (path: string, why: string) => void
  signal: AbortSignal
}

/** A folder gone or replaced before its listing: the walk goes on past it. */
const NOTHING_LISTED = new ListedFolder({
  count: 0,
  entries: new ArrayBuffer(0),
  id: 0,
  nameBytes: new ArrayBuffer(0),
  nameLengths: new ArrayBuffer(0),
})

/** A folder the walk is in: its listing, and the place in it of the next name. */
interface FolderInWalk {
  listed: ListedFolder
  names: string[]
  next: number
  order: Uint32Array
  relative: string
}

/**
 * Lists the folder a depth-first walk will enter next while it works through the one it is in. The
 * walk and the reader thread otherwise take turns, each idle while the other works: an unchanged
 * packed backup of 16,002 files in 165 folders left the main thread idle for a quarter of its time,
 * waiting for listings. The folders known and not yet entered form a stack, one level a folder being
 * walked (its subfolders not yet entered, in walk order); once a folder's listing is taken and its
 * subfolders known, the first folder of the deepest level that has one left is the next the walk
 * enters, and the only one listed ahead: memory holds one listing besides those of the folders
 * being walked, and every listing but the first is under way before the walk needs it.
 */
export class FoldersAhead<Listing = ListedFolder> {
  private ahead: undefined | {folder: string; listing: Promise<Listing>}
  private readonly levels: Array<{folders: string[]; next: number}> = []

  constructor(private readonly list: (folder: string) => Promise<Listing>) {}

  /** Called once a folder's listing has been taken: its subfolders, in the order the walk enters them. */
  enter(subfolders: string[]): void {
    this.levels.push({folders: subfolders, next: 0})
    if (this.ahead !== undefined) return
    for (let depth = this.levels.length - 1; depth >= 0; depth--) {
      const {folders, next} = this.levels[depth]
      if (next === folders.length) continue
      const folder = folders[next]
      const listing = this.list(folder)
      // Taken, and its failure reported, when the walk gets there; a walk that stops first leaves it.
      listing.catch(() => {})
      this.ahead = {folder, listing}
      return
    }
  }

  /** Called when the walk leaves the folder last entered. */
  leave(): void {
    this.levels.pop()
  }

  /** The listing of `folder`, the next one the walk enters: started ahead, or now. */
  take(folder: string): Promise<Listing> {
    const level = this.levels.at(-1)
    if (level !== undefined && level.folders[level.next] === folder) level.next++
    if (this.ahead?.folder !== folder) return this.list(folder)
    const {listing} = this.ahead
    this.ahead = undefined
    return listing
  }
}

/**
 * Reads small files a window ahead of the consumer, in walk order, on the reader thread
 * (SmallFileReader): the window is refilled once half of it has been consumed, and what it adds goes
 * to the thread as one batch. Only files that `needsContent` wants are read (an incremental backup
 * reads only what changed).
 * @yields each entry of `entries`, in order, a small file with its read under way
 */
async function* readAhead(
  entries: AsyncIterable<MediaEntry>,
  needsContent: EntriesOptions['needsContent'],
): AsyncGenerator<MediaEntry> {
  const reader = new SmallFileReader()
  const window: MediaEntry[] = []
  const iterator = entries[Symbol.asyncIterator]()
  let exhausted = false
  try {
    for (;;) {
      if (!exhausted && window.length <= READ_AHEAD_FILES / 2) {
        exhausted = await fillWindow(window, iterator, reader, needsContent)
        await reader.flush()
      }

      const entry = window.shift()
      if (entry === undefined) return
      yield entry
    }
  } finally {
    await iterator.return?.()
  }
}

/** Adds entries to the window until it is full, queueing the reads of small files; true once `entries` ended. */
async function fillWindow(
  window: MediaEntry[],
  entries: AsyncIterator<MediaEntry>,
  reader: SmallFileReader,
  needsContent: EntriesOptions['needsContent'],
): Promise<boolean> {
  while (window.length < READ_AHEAD_FILES) {
    const next = await entries.next()
    if (next.done) return true
    const entry = next.value
    if (entry.type === 'file' && entry.localPath !== undefined && entry.size <= READ_AHEAD_MAX_BYTES) {
      let wanted = needsContent?.(entry) ?? true
      if (wanted instanceof Promise) wanted = await wanted
      if (wanted) {
        entry.prefetched = reader.read(entry.localPath, entry.size, listedIdentity(entry))
        // Awaited by the consumer; one left behind by an abandoned walk must not go unhandled.
        entry.prefetched.catch(() => {})
      }
    }

    window.push(entry)
  }

  return false
}

/**
 * Files read ahead at most, and the largest read whole: 32 × 256 KiB bounds the window's memory to
 * 8 MiB, and the batches with the reader thread to as much again.
 */
const READ_AHEAD_FILES = 32
const READ_AHEAD_MAX_BYTES = 256 * 1024
