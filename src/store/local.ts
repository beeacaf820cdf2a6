import {randomBytes} from 'node:crypto'
import {constants, Dirent} from 'node:fs'
import {FileHandle, open, readdir, rename, rm, rmdir, stat} from 'node:fs/promises'
import {dirname, join, sep} from 'node:path'
import {Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {makeFolders} from '../lib/folders.js'
import {syncPath} from '../lib/fsync.js'
import {assertValidKey, ObjectInfo, ObjectNotFoundError, Store} from './port.js'

const PARTIAL_MARKER = '.partial-'
const READ_CHUNK = 1024 * 1024
/** Folders listed and files stat'ed at once while listing. */
const PARALLEL_READS = 32

/**
 * A folder on a local or mounted file system. Each object is a file at `<root>/<key>`.
 *
 * Durability: a put writes `<key>.partial-<random>`, fsyncs it, renames it over the key and fsyncs the
 * folder, so a crash leaves either the old state or the new one. Partial files left by a killed process
 * are listed under their own names, so that prune can collect them; they never shadow a real key.
 */
export class LocalStore implements Store {
  readonly description: string
  readonly local = true

  constructor(private readonly root: string) {
    this.description = root
  }

  async delete(key: string): Promise<void> {
    assertValidKey(key)
    try {
      await rm(this.pathOf(key), {force: true})
    } catch (error) {
      // A path through a file cannot hold the object: it is as absent as a missing one.
      if ((error as NodeJS.ErrnoException).code === 'ENOTDIR') return
      throw error
    }

    await this.removeEmptyParents(dirname(this.pathOf(key)))
  }

  async get(key: string): Promise<Readable> {
    assertValidKey(key)
    try {
      const handle = await open(this.pathOf(key), constants.O_RDONLY)
      return handle.createReadStream({highWaterMark: READ_CHUNK})
    } catch (error) {
      if (isMissing(error)) throw new ObjectNotFoundError(key)
      throw error
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    // Start the walk at the deepest folder the prefix names, so listing one env does not read the others.
    const slash = prefix.lastIndexOf('/')
    const base = slash === -1 ? '' : prefix.slice(0, slash)
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
    const handle = await openPartial(folder, partial)
    try {
      const output = handle.createWriteStream({highWaterMark: READ_CHUNK})
      await pipeline(source, counter, output, {signal: options.signal})
      await syncPath(partial)
      await rename(partial, target)
      await syncPath(folder)
      return {bytes}
    } catch (error) {
      await rm(partial, {force: true})
      throw error
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    assertValidKey(key)
    try {
      const info = await stat(this.pathOf(key))
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
        await rmdir(current)
      } catch {
        return
      }

      current = dirname(current)
    }
  }

  private async *walk(relative: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: Dirent[]
    try {
      entries = await readdir(relative === '' ? this.root : this.pathOf(relative), {withFileTypes: true})
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

          const info = await stat(this.pathOf(key)).catch(() => {})
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
