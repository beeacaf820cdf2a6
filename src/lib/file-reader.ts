import {deferred, Deferred} from './deferred.js'
import {RequestThread} from './worker.js'

/** Files for the worker (file-reader-worker.ts): paths back to back, and room for each file's expected size. */
export interface ReadBatch {
  contents: ArrayBuffer
  pathLengths: number[]
  paths: ArrayBuffer
  sizes: number[]
}

/** Per file, the bytes it gave (-1: gone, or failed as `failures` says); both buffers come back for reuse. */
export interface ReadReply {
  contents: ArrayBuffer
  /** The SHA-256 of each file read or hashed, at its index. */
  digests: Array<string | undefined>
  failures: Array<{code?: string; index: number; message: string}>
  id: number
  lengths: number[]
  paths: ArrayBuffer
}

/** A folder to list (its path's bytes). */
export interface ListRequest {
  folder: ArrayBuffer
}

/** What a folder holds: names back to back in `nameBytes`, and ENTRY_FIELDS numbers a name in `entries`. */
export interface FolderListing {
  count: number
  /** Per name: EntryKind, mode, size, mtimeMs, ctimeMs, ino (a Float64Array's buffer). */
  entries: ArrayBuffer
  failure?: {code?: string; message: string}
  id: number
  nameBytes: ArrayBuffer
  /** A Uint32Array's buffer: the length of each name in `nameBytes`. */
  nameLengths: ArrayBuffer
}

export const ENTRY_FIELDS = 6

export enum EntryKind {
  Directory = 2,
  File = 1,
  Gone = 0,
  Other = 4,
  Symlink = 3,
}

/** What lstat said of a name in a folder (kind Gone: deleted since the folder was read). */
export interface EntryInfo {
  ctimeMs: number
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

/** Lists a folder on the reader thread: its names, each with its lstat, in one round trip instead of one a name. */
export async function listFolder(folder: Buffer | string): Promise<ListedFolder> {
  const path = Buffer.from(folder)
  const request: ListRequest = {folder: path.buffer.slice(path.byteOffset, path.byteOffset + path.length)}
  const listing = (await readerThread().request(request, [request.folder])) as FolderListing
  if (listing.failure) throw Object.assign(new Error(listing.failure.message), {code: listing.failure.code})
  return new ListedFolder(listing)
}

interface Queued {
  path: Buffer
  result: Deferred<ReadFile | string | undefined>
  /** HASH_WHOLE_FILE: the file's SHA-256 is wanted, not its bytes. */
  size: number
}

/** A file read whole, with the SHA-256 of what was read (the worker hashes it as it reads). */
export interface ReadFile {
  content: Buffer
  sha256: string
}

/** A size in ReadBatch.sizes that asks for the file's SHA-256 (ReadReply.digests) instead of its bytes. */
export const HASH_WHOLE_FILE = -1

/** Batches with the worker at once: the walk and the reads overlap, and memory stays bounded. */
const BATCHES_IN_FLIGHT = 2

/**
 * Reads small files whole on a worker thread, in batches: for tens of thousands of small files, one
 * message a batch costs the main thread far less than an open, a read and a close each on the thread
 * pool. Like the thread pool, a read that hangs (a dead mount) blocks that thread, never the main one,
 * where the stall watchdog and the signal handlers run.
 *
 * `read` queues a file and `flush` sends what is queued; a read resolves with the file's bytes (fewer
 * than `size` when it shrank, never more) and their SHA-256, or undefined when the file is gone. `hash` reads a file of
 * any size on the thread, and resolves with its SHA-256. Each file gets a buffer
 * of its own, outside the shared pool, since an incremental backup keeps small blobs until their pack
 * is stored. The batch buffers go back and forth, reused.
 */
export class SmallFileReader {
  private inFlight = 0
  private queued: Queued[] = []
  private readonly spare: Array<{contents: ArrayBuffer; paths: ArrayBuffer}> = []
  private readonly waiting: Array<() => void> = []

  constructor(private readonly thread = readerThread()) {}

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
    for (const {path} of batch) offset += path.copy(pathBytes, offset)
    const request: ReadBatch = {
      contents,
      pathLengths: batch.map(({path}) => path.length),
      paths,
      sizes: batch.map(({size}) => size),
    }
    this.thread
      .request(request, [contents, paths])
      .then(
        (reply) => this.receive(batch, reply as ReadReply),
        (error: Error) => {
          for (const {result} of batch) result.reject(error)
        },
      )
      .finally(() => {
        this.inFlight--
        this.waiting.shift()?.()
      })
  }

  /** Queues the SHA-256 of a whole file of any size; undefined when the file is gone. */
  hash(path: Buffer | string): Promise<string | undefined> {
    const result = deferred<ReadFile | string | undefined>()
    this.queued.push({path: Buffer.from(path), result, size: HASH_WHOLE_FILE})
    return result.promise as Promise<string | undefined>
  }

  read(path: Buffer | string, size: number): Promise<ReadFile | undefined> {
    const result = deferred<ReadFile | string | undefined>()
    this.queued.push({path: Buffer.from(path), result, size})
    return result.promise as Promise<ReadFile | undefined>
  }

  /** A spare pair of buffers large enough for the batch, or new ones. */
  private buffers(batch: Queued[]): {contents: ArrayBuffer; paths: ArrayBuffer} {
    let contentBytes = 0
    let pathBytes = 0
    for (const {path, size} of batch) {
      contentBytes += Math.max(size, 0)
      pathBytes += path.length
    }

    const index = this.spare.findIndex(
      ({contents, paths}) => contents.byteLength >= contentBytes && paths.byteLength >= pathBytes,
    )
    if (index !== -1) return this.spare.splice(index, 1)[0]
    return {
      contents: new ArrayBuffer(Math.max(contentBytes, MIN_CONTENT_BYTES)),
      paths: new ArrayBuffer(Math.max(pathBytes, MIN_PATH_BYTES)),
    }
  }

  private receive(batch: Queued[], reply: ReadReply): void {
    const contents = Buffer.from(reply.contents)
    let offset = 0
    for (const [index, {result, size}] of batch.entries()) {
      const length = reply.lengths[index]
      if (length >= 0 && size === HASH_WHOLE_FILE) {
        result.resolve(reply.digests[index])
      } else if (length >= 0) {
        const content = Buffer.allocUnsafeSlow(length)
        contents.copy(content, 0, offset, offset + length)
        result.resolve({content, sha256: reply.digests[index]!})
      } else {
        const failure = reply.failures.find((failed) => failed.index === index)
        // eslint-disable-next-line unicorn/no-useless-undefined -- undefined is the answer: the file is gone
        if (failure === undefined) result.resolve(undefined)
        else result.reject(Object.assign(new Error(failure.message), {code: failure.code}))
      }

      offset += Math.max(size, 0)
    }

    // Only buffers of ordinary size are kept: one batch of large files must not hold memory for the rest of the run.
    if (this.spare.length < BATCHES_IN_FLIGHT + 1 && reply.contents.byteLength <= MAX_SPARE_BYTES) {
      this.spare.push({contents: reply.contents, paths: reply.paths})
    }
  }
}

const MIN_CONTENT_BYTES = 256 * 1024
const MIN_PATH_BYTES = 16 * 1024
const MAX_SPARE_BYTES = 2 * 1024 * 1024

/** The worker holds a batch or two at a time: a small heap is plenty. */
const WORKER_LIMITS = {maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1}

function readerThread(): RequestThread<ListRequest | ReadBatch, FolderListing | ReadReply> {
  return RequestThread.of('lib/file-reader-worker', {resourceLimits: WORKER_LIMITS})
}
