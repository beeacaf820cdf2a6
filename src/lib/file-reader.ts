import {deferred, Deferred} from './deferred.js'
import {
  ENTRY_FIELDS,
  EntryKind,
  FolderListing,
  HASH_WHOLE_FILE,
  ListRequest,
  ReadBatch,
  ReadReply,
} from './file-reader-protocol.js'
import {ReaderRoute, smallWorkHere} from './file-reader-route.js'
import {FileIdentity} from './listed-files.js'

export {EntryKind} from './file-reader-protocol.js'

/** What lstat said of a name in a folder (kind Gone: deleted since the folder was read). */
export interface EntryInfo {
  ctimeMs: number
  dev: number
  ino: number
  kind: EntryKind
  mode: number
  mtimeMs: number
  size: number
}

/**
 * A folder's names and their lstat, kept as the worker sent them (a buffer of names, an array of
 * numbers): a folder of a million names costs tens of MiB, not an object a name.
 */
export class ListedFolder {
  private readonly fields: Float64Array
  private readonly nameBytes: Buffer
  private readonly offsets: Uint32Array

  constructor(listing: FolderListing) {
    this.fields = new Float64Array(listing.entries)
    this.nameBytes = Buffer.from(listing.nameBytes)
    const lengths = new Uint32Array(listing.nameLengths)
    this.offsets = new Uint32Array(listing.count + 1)
    for (const [index, length] of lengths.entries()) this.offsets[index + 1] = this.offsets[index] + length
  }

  get count(): number {
    return this.offsets.length - 1
  }

  info(index: number): EntryInfo {
    const at = index * ENTRY_FIELDS
    const {fields} = this
    return {
      ctimeMs: fields[at + 4],
      dev: fields[at + 6],
      ino: fields[at + 5],
      kind: fields[at] as EntryKind,
      mode: fields[at + 1],
      mtimeMs: fields[at + 3],
      size: fields[at + 2],
    }
  }

  name(index: number): Buffer {
    return this.nameBytes.subarray(this.offsets[index], this.offsets[index + 1])
  }
}

/**
 * Lists a folder with each name's lstat: on the reader thread, one round trip instead of one a name.
 * `expect`: the device and inode its parent's listing gave; the folder is listed only if it is still
 * that one, and undefined is the answer when it is gone or is not (listed-files.ts). Without it, the
 * folder is listed wherever its path leads, and its absence is an error.
 */
export async function listFolder(folder: Buffer | string, route?: ReaderRoute): Promise<ListedFolder>
export async function listFolder(
  folder: Buffer | string,
  route: ReaderRoute | undefined,
  expect: FileIdentity | undefined,
): Promise<ListedFolder | undefined>
export async function listFolder(
  folder: Buffer | string,
  route: ReaderRoute = smallWorkHere(),
  expect?: FileIdentity,
): Promise<ListedFolder | undefined> {
  const path = Buffer.from(folder)
  const request: ListRequest = {expect, folder: path.buffer.slice(path.byteOffset, path.byteOffset + path.length)}
  const listing = await route.list(request)
  if (listing.failure) throw Object.assign(new Error(listing.failure.message), {code: listing.failure.code})
  return listing.gone ? undefined : new ListedFolder(listing)
}

interface Queued {
  /** What the file's listing said it was (device and inode): read only if it still is. */
  expected: FileIdentity | undefined
  /**
   * As the caller gave it, never copied: a copy a file, from Node.js's shared pool of small buffers,
   * outlived enough young collections to keep whole pool slabs (64 KiB on Node.js 24) alive until a
   * full one.
   */
  path: Buffer | string
  result: Deferred<ReadFile | string | undefined>
  /** HASH_WHOLE_FILE: the file's SHA-256 is wanted, not its bytes. */
  size: number
}

/** A file read whole, with the SHA-256 of what was read (the worker hashes it as it reads). */
export interface ReadFile {
  /** A view of the batch the file was read in: valid until `release`, or for as long as it is kept. */
  content: Buffer
  /**
   * Says that `content` is no longer needed (it was copied): once every file of its batch has said so,
   * the batch's buffer reads the next files. A reader that keeps the content does not call it.
   */
  release: () => void
  sha256: string
}

/** Batches with the worker at once: the walk and the reads overlap, and memory stays bounded. */
const BATCHES_IN_FLIGHT = 2

/**
 * Reads small files whole on the reader thread, in batches: for tens of thousands of small files, one
 * message a batch costs the main thread far less than an open, a read and a close each on the thread
 * pool (a small tree's are read here, with the pool: see SmallWorkHere in file-reader-route.ts). Like the thread pool,
 * a read that hangs (a dead mount) blocks that thread, never the main one, where the stall watchdog and
 * the signal handlers run.
 *
 * `read` queues a file and `flush` sends what is queued; a read resolves with the file's bytes (fewer
 * than `size` when it shrank, never more) and their SHA-256, or undefined when the file is gone or is
 * no longer the one its listing named (never read through a symlink or a FIFO: listed-files.ts).
 * `hash` reads a file of any size, and resolves with its SHA-256. A file's content is a view of its
 * batch's buffer, which goes back to the reader thread for the next batch once every file of it has
 * been released (see ReadFile): the same few buffers carry every file of a tree, and no buffer is
 * made per file.
 */
export class SmallFileReader {
  private inFlight = 0
  private queued: Queued[] = []
  private readonly spare: Array<{contents: ArrayBuffer; paths: ArrayBuffer}> = []
  private readonly waiting: Array<() => void> = []

  constructor(private readonly route: ReaderRoute = smallWorkHere()) {}

  /** How many reads and hashes are queued and not yet sent. */
  get queuedCount(): number {
    return this.queued.length
  }

  /** Sends what is queued, once fewer than BATCHES_IN_FLIGHT batches are with the worker. */
  async flush(): Promise<void> {
    if (this.queued.length === 0) return
    const batch = this.queued
    this.queued = []
    while (this.inFlight >= BATCHES_IN_FLIGHT) {
      await new Promise<void>((resolve) => {
        this.waiting.push(resolve)
      })
    }

    this.inFlight++
    const {contents, paths} = this.buffers(batch)
    const pathBytes = Buffer.from(paths)
    let offset = 0
    for (const {path} of batch)
      offset += typeof path === 'string' ? pathBytes.write(path, offset) : path.copy(pathBytes, offset)
    const request: ReadBatch = {
      contents,
      identities: batch.flatMap(({expected}) => (expected ? [expected.dev, expected.ino] : [Number.NaN, Number.NaN])),
      pathLengths: batch.map(({path}) => byteLength(path)),
      paths,
      sizes: batch.map(({size}) => size),
    }
    this.route
      .read(request)
      .then(
        (reply) => this.receive(batch, reply),
        (error: Error) => {
          for (const {result} of batch) result.reject(error)
        },
      )
      .finally(() => {
        this.inFlight--
        this.waiting.shift()?.()
      })
  }

  /** Queues the SHA-256 of a whole file of any size; undefined when the file is gone or not a regular file. */
  hash(path: Buffer | string): Promise<string | undefined> {
    const result = deferred<ReadFile | string | undefined>()
    this.queued.push({expected: undefined, path, result, size: HASH_WHOLE_FILE})
    return result.promise as Promise<string | undefined>
  }

  /** `expected`: what the file's listing said it was; undefined is the answer when it no longer is. */
  read(path: Buffer | string, size: number, expected?: FileIdentity): Promise<ReadFile | undefined> {
    const result = deferred<ReadFile | string | undefined>()
    this.queued.push({expected, path, result, size})
    return result.promise as Promise<ReadFile | undefined>
  }

  /** A spare pair of buffers large enough for the batch, or new ones. */
  private buffers(batch: Queued[]): {contents: ArrayBuffer; paths: ArrayBuffer} {
    let contentBytes = 0
    let pathBytes = 0
    for (const {path, size} of batch) {
      contentBytes += Math.max(size, 0)
      pathBytes += byteLength(path)
    }

    // The smallest spare that fits, so that the larger ones are there for the larger batches.
    let best = -1
    for (const [index, {contents, paths}] of this.spare.entries()) {
      if (contents.byteLength < contentBytes || paths.byteLength < pathBytes) continue
      if (best === -1 || contents.byteLength < this.spare[best].contents.byteLength) best = index
    }

    if (best !== -1) return this.spare.splice(best, 1)[0]
    return {
      contents: new ArrayBuffer(sizeClass(contentBytes, MIN_CONTENT_BYTES)),
      paths: new ArrayBuffer(sizeClass(pathBytes, MIN_PATH_BYTES)),
    }
  }

  /**
   * Keeps the buffers of a batch for the next ones, the larger ones first. Kept only until the first
   * that did not fit, a tree of files of a few hundred KiB made new buffers for nearly every batch,
   * zero-filled, and their garbage set off a full collection about every 100 ms (34 in one backup of
   * the bench tree).
   */
  private keepSpare(reply: ReadReply): void {
    // One batch of unusually large files must not hold memory for the rest of the run.
    if (reply.contents.byteLength > MAX_SPARE_BYTES) return
    const spare = {contents: reply.contents, paths: reply.paths}
    if (this.spare.length < BATCHES_IN_FLIGHT + 1) {
      this.spare.push(spare)
      return
    }

    let smallest = 0
    for (const [index, {contents}] of this.spare.entries()) {
      if (contents.byteLength < this.spare[smallest].contents.byteLength) smallest = index
    }

    if (this.spare[smallest].contents.byteLength < spare.contents.byteLength) this.spare[smallest] = spare
  }

  private receive(batch: Queued[], reply: ReadReply): void {
    const contents = Buffer.from(reply.contents)
    // The buffers are reused once every view of them is released; one for this loop, which lends them.
    let views = 1
    const releaseOne = () => {
      if (--views === 0) this.keepSpare(reply)
    }

    let offset = 0
    for (const [index, {result, size}] of batch.entries()) {
      const length = reply.lengths[index]
      if (length >= 0 && size === HASH_WHOLE_FILE) {
        result.resolve(reply.digests[index])
      } else if (length >= 0) {
        views++
        let released = false
        const release = () => {
          if (released) return
          released = true
          releaseOne()
        }

        result.resolve({content: contents.subarray(offset, offset + length), release, sha256: reply.digests[index]!})
      } else {
        const failure = reply.failures.find((failed) => failed.index === index)
        // eslint-disable-next-line unicorn/no-useless-undefined -- undefined is the answer: the file is gone
        if (failure === undefined) result.resolve(undefined)
        else result.reject(Object.assign(new Error(failure.message), {code: failure.code}))
      }

      offset += Math.max(size, 0)
    }

    releaseOne()
  }
}

/** A path's length in bytes; a string path is UTF-8 (a name that is not is given as bytes). */
function byteLength(path: Buffer | string): number {
  return typeof path === 'string' ? Buffer.byteLength(path) : path.length
}

/** `bytes` rounded up to a power of two, and at least `least`: a few sizes serve every batch. */
function sizeClass(bytes: number, least: number): number {
  return Math.max(least, 2 ** Math.ceil(Math.log2(Math.max(bytes, 1))))
}

const MIN_CONTENT_BYTES = 256 * 1024
const MIN_PATH_BYTES = 16 * 1024
const MAX_SPARE_BYTES = 2 * 1024 * 1024
