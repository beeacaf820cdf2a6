import {randomBytes} from 'node:crypto'
import {lstatSync} from 'node:fs'
import {lstat, mkdir, readdir, readlink, realpath, rename, rm} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {Readable} from 'node:stream'

import {extractMediaArchive} from '../../archive/extract.js'
import {MediaEntry} from '../../archive/media-tar.js'
import {BackupError} from '../../errors.js'
import {EntriesOptions, MediaProvider, MediaRestoreSummary, PreparedMediaRestore} from './port.js'

/** Media in a folder: nested folders, any file names, empty files, and symlinks kept as symlinks. */
/** A tar header block, and the two zero blocks that end an archive: enough for an estimate. */
const TAR_HEADER_BYTES = 512
const TAR_END_BYTES = 1024

export class FilesystemMediaProvider implements MediaProvider {
  readonly kind = 'filesystem'
  readonly location: string

  constructor(private readonly root: string) {
    this.location = root
  }

  async *entries({onSkip, signal}: EntriesOptions): AsyncIterable<MediaEntry> {
    const info = await lstat(this.root).catch(() => {})
    if (!info?.isDirectory()) {
      throw new BackupError('SOURCE_UNAVAILABLE', `The media folder ${this.root} does not exist.`, {
        suggestion: 'Check MEDIA_ROOT (or "media" in the config), or use --db-only.',
      })
    }

    yield* this.walk('', signal, onSkip)
  }

  async estimateArchiveBytes(signal: AbortSignal): Promise<number> {
    let bytes = TAR_END_BYTES
    for await (const entry of this.walk('', signal)) bytes += TAR_HEADER_BYTES + Math.ceil(entry.size / 512) * 512
    return bytes
  }

  /** Extracts and checks the archive into a new folder beside the media folder; see restore. */
  async prepare(tar: Readable): Promise<PreparedMediaRestore> {
    const target = await realpath(this.root).catch(() => this.root)
    const parent = dirname(target)
    const suffix = randomBytes(6).toString('hex')
    const fresh = join(parent, `.${basename(target)}.restore-${suffix}`)
    const previous = join(parent, `.${basename(target)}.before-restore-${suffix}`)
    await mkdir(parent, {recursive: true})
    let summary
    try {
      summary = await extractMediaArchive(tar, fresh)
    } catch (error) {
      await rm(fresh, {force: true, recursive: true})
      throw error instanceof BackupError
        ? new BackupError(error.code, `${error.message} The media folder ${target} was not changed.`, {
            cause: error,
            exitCode: error.exitCode,
            suggestion: error.suggestion,
          })
        : error
    }

    const extracted = summary
    return {
      async commit() {
        const existed = (await lstat(target).catch(() => {})) !== undefined
        if (existed) await rename(target, previous)
        try {
          await rename(fresh, target)
        } catch (error) {
          if (existed) await rename(previous, target)
          await rm(fresh, {force: true, recursive: true})
          throw error
        }

        if (existed) await rm(previous, {force: true, recursive: true})
        return {...extracted, deleted: 0}
      },
      discard: () => rm(fresh, {force: true, recursive: true}),
    }
  }

  /**
   * Extracts the archive into a new folder beside the media folder, then swaps the two with renames and
   * removes the old one. Until the swap the media folder is untouched; a symlinked media folder keeps
   * its link, and the folder it points to is the one replaced.
   */
  async restore(tar: Readable): Promise<MediaRestoreSummary> {
    return (await this.prepare(tar)).commit()
  }

  private async *walk(
    relative: string,
    signal: AbortSignal,
    onSkip?: (path: string, why: string) => void,
  ): AsyncIterable<MediaEntry> {
    signal.throwIfAborted()
    const folder = relative === '' ? this.root : join(this.root, relative)
    // One folder's names at a time: memory follows the widest folder, not the whole tree.
    const names = (await readdir(folder)).sort()
    for (const name of names) {
      const path = relative === '' ? name : `${relative}/${name}`
      const absolute = join(folder, name)
      // Synchronous: from the inode cache it takes microseconds, where a thread-pool round trip per
      // file dominated the backup of many small files.
      const info = lstatSync(absolute, {throwIfNoEntry: false})
      if (info === undefined) {
        onSkip?.(path, 'deleted while the backup ran')
        continue
      }

      const common = {ctimeMs: info.ctimeMs, ino: info.ino, mode: info.mode, mtime: info.mtime, path}
      if (info.isDirectory()) {
        yield {...common, size: 0, type: 'directory'}
        yield* this.walk(path, signal, onSkip)
      } else if (info.isFile()) {
        yield {...common, localPath: absolute, size: info.size, type: 'file'}
      } else if (info.isSymbolicLink()) {
        yield {...common, linkTarget: await readlink(absolute), size: 0, type: 'symlink'}
      } else {
        onSkip?.(path, 'not a regular file, folder or symlink')
      }
    }
  }
}
