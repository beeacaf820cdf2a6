import {lstat, readdir, readlink} from 'node:fs/promises'
import {join} from 'node:path'

import {MediaEntry, openLocalFile} from '../../archive/media-tar.js'
import {BackupError} from '../../errors.js'
import {MediaProvider} from './port.js'

/** Media in a folder: nested folders, any file names, empty files, and symlinks kept as symlinks. */
export class FilesystemMediaProvider implements MediaProvider {
  readonly kind = 'filesystem'
  readonly location: string

  constructor(private readonly root: string) {
    this.location = root
  }

  async *entries({
    onSkip,
    signal,
  }: {
    onSkip?: (path: string, why: string) => void
    signal: AbortSignal
  }): AsyncIterable<MediaEntry> {
    const info = await lstat(this.root).catch(() => {})
    if (!info?.isDirectory()) {
      throw new BackupError('SOURCE_UNAVAILABLE', `The media folder ${this.root} does not exist.`, {
        suggestion: 'Check MEDIA_ROOT (or "media" in the config), or use --db-only.',
      })
    }

    yield* this.walk('', signal, onSkip)
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
      const info = await lstat(absolute).catch((error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT') return
        throw error
      })
      if (info === undefined) {
        onSkip?.(path, 'deleted while the backup ran')
        continue
      }

      const common = {mode: info.mode, mtime: info.mtime, path}
      if (info.isDirectory()) {
        yield {...common, size: 0, type: 'directory'}
        yield* this.walk(path, signal, onSkip)
      } else if (info.isFile()) {
        yield {...common, open: openLocalFile(absolute), size: info.size, type: 'file'}
      } else if (info.isSymbolicLink()) {
        yield {...common, linkTarget: await readlink(absolute), size: 0, type: 'symlink'}
      } else {
        onSkip?.(path, 'not a regular file, folder or symlink')
      }
    }
  }
}
