import {randomBytes} from 'node:crypto'
import {constants, Dirent, Stats} from 'node:fs'
import {FileHandle, open, opendir, readdir, rename, rm, rmdir, stat} from 'node:fs/promises'
import {dirname, join, sep} from 'node:path'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {BackupError, describeReadError, isSystemError} from '../errors.js'
import {BufferLender} from '../lib/buffer-loan.js'
import {fileSink} from '../lib/file-sink.js'
import {makeFolders} from '../lib/folders.js'
import {syncPath} from '../lib/fsync.js'
import {BoundedCalls, closeOnceSettled, settling} from './bounded-calls.js'
import {putFileAsStream} from './file-source.js'
import {LocalReadStream} from './local-read-stream.js'
import {
  assertValidKey,
  ObjectInfo,
  ObjectNotFoundError,
  ObjectReadError,
  ObjectUnreadableError,
  PutFileOptions,
  Store,
  StoreCallOptions,
} from './port.js'

const PARTIAL_MARKER = '.partial-'
/** Folders listed and files stat'ed at once while listing. */
const PARALLEL_READS = 32

export interface LocalStoreOptions extends StoreCallOptions {
  /**
   * Whether a missing root folder may be made by the first put. Only for a store inside the app's own
   * folder (the default `.divio/backups`): anywhere else a missing root is most likely a disk or share
   * that is not mounted, and making the folder would quietly fill the system disk instead.
   */
  createRoot?: boolean
}

/**
 * A folder on a local or mounted file system. Each object is a file at `<root>/<key>`.
 *
 * The root must exist and be a folder; otherwise every operation fails with STORE_NOT_FOUND, naming it
 * (see {@link LocalStoreOptions.createRoot} for the one exception), rather than listing nothing.
 *
 * Durability: a put writes `<key>.partial-<random>`, fsyncs it, renames it over the key and fsyncs the
 * folder, so a crash leaves either the old state or the new one. A large object is flushed as it is
 * written (file-sink.ts), so that its last fsync waits for the last few MiB, not the whole object.
 * Partial files left by a killed process are listed under their own names, so that prune can collect
 * them; they never shadow a real key.
 *
 * A folder on a mount can hang (an NFS server gone away): each call into the file system is raced
 * against the command's signal and the stall timeout (StoreCallOptions), so that the command fails
 * with a stall of the store, or stops on SIGINT/SIGTERM, instead of waiting with it. The call itself
 * stays with its thread until the kernel lets it go.
 */
export class LocalStore implements Store {
  readonly description: string
  readonly local = true
  /** Every call into the file system, bounded by the signal and the stall timeout. */
  private readonly calls: BoundedCalls
  /**
   * Full-size read buffers given back, shared by the files this store reads: a packed download or
   * restore reads one pack after another, and each pack's stream made its own (161 MiB of new buffers
   * for the 42 packs of the bench tree). The store's, so that a host's process keeps none once the
   * command that opened it is done.
   */
  private readonly fullReads = new BufferLender(4)
  private rootChecked = false

  constructor(
    private readonly root: string,
    private readonly options: LocalStoreOptions = {},
  ) {
    this.description = root
    this.calls = new BoundedCalls(`the store folder ${root}`, options)
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key)
    if (!(await this.rootHoldsObjects())) return
    try {
      await this.calls.run('a delete', rm(this.pathOf(key), {force: true}))
    } catch (error) {
      // A path through a file cannot hold the object: it is as absent as a missing one.
      if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return
      throw error
    }

    await this.removeEmptyParents(dirname(this.pathOf(key)))
  }

  async get(key: string): Promise<Readable> {
    assertValidKey(key)
    if (!(await this.rootExists())) throw new ObjectNotFoundError(key)
    let handle: FileHandle
    try {
      // Non-blocking: opening a FIFO planted under an object's name would otherwise wait for a writer,
      // and hold the command (SIGTERM included) for good.
      // eslint-disable-next-line no-bitwise -- open(2) flags; no string flag says O_NONBLOCK
      handle = await this.calls.run('an open', open(this.pathOf(key), constants.O_RDONLY | constants.O_NONBLOCK))
    } catch (error) {
      if (isMissing(error)) throw new ObjectNotFoundError(key)
      throw readFailure(error, key, this.pathOf(key))
    }

    // Only a regular file is an object: a FIFO's read would never end, nor would a device's that a
    // link leads to (/dev/zero). Something else under an object's name is unreadable, as good as missing.
    const statting = settling(handle.stat())
    const info = await this.calls.run('a stat', statting.work).catch(async (error: unknown) => {
      await closeOnceSettled(handle, statting)
      throw readFailure(error, key, this.pathOf(key))
    })
    if (!info.isFile()) {
      await handle.close()
      throw new ObjectUnreadableError(key, `${this.pathOf(key)} is ${kindOf(info)}, not a regular file`)
    }

    const path = this.pathOf(key)
    return new LocalReadStream(
      handle,
      this.fullReads,
      (read) => this.calls.run('a read', read),
      (error) => readFailure(error, key, path),
    )
  }

  async isEmpty(): Promise<boolean> {
    if (!(await this.rootExists())) return true
    const folder = await this.calls.run('a listing', opendir(this.root))
    const reading = settling(folder.read())
    const first = await this.calls.run('a listing', reading.work).catch(async (error: unknown) => {
      await closeOnceSettled(folder, reading)
      throw error
    })
    await folder.close()
    return first === null
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Start the walk at the deepest folder the prefix names, so listing one env does not read the others.
    const slash = prefix.lastIndexOf('/')
    const base = slash === -1 ? '' : prefix.slice(0, slash)
    if (!(await this.rootExists())) return
    yield* this.walk(base, prefix)
  }

  async put(key: string, source: Readable, options: {signal?: AbortSignal} = {}): Promise<{bytes: number}> {
    assertValidKey(key)
    const target = this.pathOf(key)
    const folder = dirname(target)
    const partial = `${target}${PARTIAL_MARKER}${randomBytes(6).toString('hex')}`
    let bytes = 0
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        bytes += chunk.length
        callback(null, chunk)
      },
    })
    if (!(await this.rootExists())) await this.calls.run('a new folder', makeFolders(this.root))
    const handle = await this.calls.run('a new file', openPartial(folder, partial))
    try {
      try {
        await pipeline(source, counter, fileSink(handle, {syncs: true}), {signal: options.signal})
      } finally {
        await handle.close()
      }

      await this.calls.run('a flush', syncPath(partial))
      await this.calls.run('a rename', rename(partial, target))
      await this.calls.run('a flush', syncPath(folder))
      return {bytes}
    } catch (error) {
      // Best effort, and bounded like the rest: a partial file left behind is prune's to collect.
      await this.calls.run('a delete', rm(partial, {force: true})).catch(() => {})
      throw error
    }
  }

  putFile(key: string, path: string, options: PutFileOptions = {}): Promise<{bytes: number}> {
    return putFileAsStream(this, key, path, options)
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key)
    if (!(await this.rootExists())) return undefined
    try {
      const info = await this.calls.run('a stat', stat(this.pathOf(key)))
      return info.isFile() ? {bytes: info.size, key, modifiedAt: storeTime(info)} : undefined
    } catch (error) {
      if (isMissing(error)) return undefined
      throw error
    }
  }

  private pathOf(key: string): string {
    return join(this.root, ...key.split('/'))
  }

  private async removeEmptyParents(folder: string): Promise<void> {
    let current = folder
    while (current.startsWith(this.root + sep)) {
      try {
        await this.calls.run('a delete', rmdir(current))
      } catch {
        return
      }

      current = dirname(current)
    }
  }

  /**
   * Whether the root folder is there. False only for a root that {@link LocalStoreOptions.createRoot}
   * allows to be missing (a store with no backups yet); any other missing root, or a root that is no
   * folder, is an error. Checked until it is seen once, since a put makes it.
   */
  private async rootExists(): Promise<boolean> {
    if (this.rootChecked) return true
    let info
    try {
      info = await this.calls.run('a stat', stat(this.root))
    } catch (error) {
      const {code} = error as NodeJS.ErrnoException
      if (code === 'ENOENT' && this.options.createRoot) return false
      if (code === 'ENOENT') {
        throw new BackupError('STORE_NOT_FOUND', `The store folder ${this.root} does not exist.`, {
          suggestion: `If it is on a disk or a share that is not mounted, mount it. To start a new store there, make the folder first: mkdir -p '${this.root}'.`,
        })
      }

      if (code === 'ENOTDIR') throw notAFolder(this.root, 'a part of its path is a file, not a folder')
      throw error
    }

    if (!info.isDirectory()) throw notAFolder(this.root, 'it is a file, not a folder')
    this.rootChecked = true
    return true
  }

  /**
   * Like rootExists, but a missing root is no error: it holds nothing, so there is nothing to
   * delete (a backup that failed because the store folder is missing left nothing there).
   */
  private async rootHoldsObjects(): Promise<boolean> {
    try {
      return await this.rootExists()
    } catch (error) {
      if (error instanceof BackupError && error.code === 'STORE_NOT_FOUND') return false
      throw error
    }
  }

  private async *walk(relative: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: Dirent[]
    try {
      entries = await this.calls.run(
        'a listing',
        readdir(relative === '' ? this.root : this.pathOf(relative), {withFileTypes: true}),
      )
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR')
        return
      throw error
    }

    // Sorting names with a trailing "/" for folders keeps the yielded keys in ascending order.
    const children = entries
      .map((entry) => {
        const key = relative === '' ? entry.name : `${relative}/${entry.name}`
        return {isFolder: entry.isDirectory(), key, sortKey: entry.name + (entry.isDirectory() ? '/' : '')}
      })
      .filter(({isFolder, key}) =>
        isFolder ? `${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`) : key.startsWith(prefix),
      )
      .sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0))
    // A backup is a folder of a few files: read many of them at once, since each read waits on the
    // file system, and yield the results in order.
    for (let start = 0; start < children.length; start += PARALLEL_READS) {
      const batch = children.slice(start, start + PARALLEL_READS)
      const results = await Promise.all(
        batch.map(async ({isFolder, key}) => {
          if (isFolder) {
            const objects: ObjectInfo[] = []
            for await (const object of this.walk(key, prefix)) objects.push(object)
            return objects
          }

          const info = await this.calls.run('a stat', stat(this.pathOf(key))).catch((error: unknown) => {
            // Gone (or unreadable) since the listing is no object; a stall or an interruption is the command's.
            if (error instanceof BackupError || this.options.signal?.aborted) throw error
          })
          return info ? [{bytes: info.size, key, modifiedAt: storeTime(info)}] : []
        }),
      )
      for (const objects of results) yield* objects
    }
  }
}

/**
 * Creates the partial file of a put, 0600. A delete elsewhere removes folders that it leaves empty
 * (a prune deleting the last pack of packs/), which can happen between making the folder and creating
 * the file in it: then the folder is made again. Once the partial exists, the folder is not empty,
 * and no delete removes it.
 */
async function openPartial(folder: string, partial: string): Promise<FileHandle> {
  for (let attempt = 1; ; attempt++) {
    await makeFolders(folder)
    try {
      return await open(partial, 'wx', 0o600)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 5) throw error
    }
  }
}

/**
 * A read of an object that the file system refused, as the store's failure: named, with what to do.
 * Left as it was, a disk's EIO read as "Unexpected error: EIO: i/o error, read". A stall or an
 * interruption (a BackupError already) is the command's, and passes.
 */
function readFailure(error: unknown, key: string, path: string): unknown {
  if (!isSystemError(error)) return error
  // Only an input/output error is the object's: verify counts it failed, and a pack is not built on
  // again. A permission, or a machine out of file handles, is not: the command stops, naming it.
  if (error.code === 'EIO') {
    return new ObjectReadError(key, describeReadError(error), path, {
      cause: error,
      suggestion:
        'Check the disk that holds the store (dmesg, smartctl) and copy what still reads to another one; `divio app backup verify --all` tells which backups read whole.',
    })
  }

  return new BackupError('STORE_UNAVAILABLE', `Cannot read ${path} from the store: ${describeReadError(error)}.`, {
    cause: error,
    suggestion:
      error.code === 'EACCES' || error.code === 'EPERM'
        ? "Check that this user may read the store's files, then run the command again."
        : 'Check the file system that holds the store, then run the command again.',
  })
}

function notAFolder(root: string, why: string): BackupError {
  return new BackupError('STORE_UNAVAILABLE', `The store ${root} cannot be used: ${why}.`, {
    suggestion: 'Point the store (DIVIO_BACKUP_STORE, or "store" in the config) at a folder.',
  })
}

function isMissing(error: unknown): boolean {
  const {code} = error as NodeJS.ErrnoException
  return code === 'ENOENT' || code === 'ENOTDIR'
}

/**
 * When the store wrote a file, by a clock its writers cannot set back: the later of its mtime and its
 * ctime. Anyone who can write the folder can set an mtime (utimes), but the kernel sets the ctime on
 * every change, so a planted file reads as planted now. A copied store reads as written when copied.
 */
function storeTime(info: {ctimeMs: number; mtimeMs: number}): Date {
  return new Date(Math.max(info.mtimeMs, info.ctimeMs))
}

function kindOf(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO'
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device'
  if (info.isSocket()) return 'a socket'
  return info.isDirectory() ? 'a folder' : 'not a file'
}
