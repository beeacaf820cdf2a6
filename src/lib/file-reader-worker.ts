import {createHash} from 'node:crypto'
import {closeSync, lstatSync, opendirSync, readSync} from 'node:fs'
import {parentPort} from 'node:worker_threads'

import {
  batchReads,
  ENTRY_FIELDS,
  FolderListing,
  ListRequest,
  ReadBatch,
  ReadReplyBuilder,
  setEntryFields,
} from './file-reader-protocol.js'
import {namingFolder, openListedSync, pathThrough} from './listed-files.js'

/**
 * The reader thread of file-reader.ts, with plain system calls: lists a folder with the lstat of each
 * name, or reads each file of a batch whole into the batch's buffer and hashes it. A file that is gone
 * is answered with -1; any other failure is that file's alone.
 */

const port = parentPort!
const SLASH = 0x2f

port.on('message', (request: (ListRequest | ReadBatch) & {id: number}) => {
  if ('folder' in request) list(request)
  else read(request)
})

/**
 * Lists a folder, names and fields copied into buffers that grow to the widest folder and are reused
 * from folder to folder: a folder of a million names must not be a million objects in this thread's
 * small heap, and buffers made a folder would be garbage that this thread, which allocates little else,
 * would collect only after tens of MiB. What goes to the main thread is an exact copy of each, transferred.
 */
function list(request: ListRequest & {id: number}): void {
  const folder = Buffer.from(request.folder)
  let reply: FolderListing
  let through: Buffer = folder
  try {
    // The folder the parent's listing named, or none: listed through its descriptor (listed-files.ts).
    const descriptor = openListedSync(folder, request.expect ? 'folder' : 'root', request.expect)
    if (descriptor === undefined) {
      port.postMessage({...EMPTY_LISTING, gone: true, id: request.id})
      return
    }

    try {
      through = pathThrough(descriptor, folder)
      reply = {...listThrough(through), id: request.id}
    } finally {
      closeSync(descriptor)
    }
  } catch (error) {
    const {code, message, path} = error as NodeJS.ErrnoException
    // opendir's errors do not name the folder, as readdir's do.
    const named = path === undefined ? `${message} '${folder.toString()}'` : message
    port.postMessage({failure: {code, message: namingFolder(named, through, folder)}, id: request.id})
    return
  }

  port.postMessage(reply, [reply.entries, reply.nameBytes, reply.nameLengths])
}

const EMPTY_LISTING = {
  count: 0,
  entries: new ArrayBuffer(0),
  nameBytes: new ArrayBuffer(0),
  nameLengths: new ArrayBuffer(0),
}

function listThrough(folder: Buffer): Omit<FolderListing, 'id'> {
  const path = scratch.path.start(folder)
  scratch.names.start()
  let count = 0
  // Names as bytes: they need not be UTF-8. Node.js gives Buffer names for this encoding, as readdir
  // does, though its types only name string encodings.
  const directory = opendirSync(folder, {encoding: 'buffer' as BufferEncoding})
  try {
    for (let entry = directory.readSync(); entry !== null; entry = directory.readSync()) {
      const name = entry.name as unknown as Buffer
      scratch.room(count + 1)
      scratch.names.append(name)
      scratch.lengths[count] = name.length
      setEntryFields(scratch.fields, count, lstatSync(path.with(name), {throwIfNoEntry: false}))
      count++
    }
  } finally {
    directory.closeSync()
  }

  return {
    count,
    entries: scratch.fields.buffer.slice(0, count * ENTRY_FIELDS * 8),
    nameBytes: scratch.names.copy(),
    nameLengths: scratch.lengths.buffer.slice(0, count * 4),
  }
}

/** Bytes appended to a buffer that doubles when full, and is reused from one use to the next. */
class GrowingBytes {
  private buffer = Buffer.allocUnsafeSlow(64 * 1024)
  private used = 0

  append(bytes: Buffer): void {
    this.reserve(this.used + bytes.length)
    this.used += bytes.copy(this.buffer, this.used)
  }

  /** The bytes appended since start, in an ArrayBuffer of their own (to transfer). */
  copy(): ArrayBuffer {
    return this.buffer.buffer.slice(this.buffer.byteOffset, this.buffer.byteOffset + this.used) as ArrayBuffer
  }

  start(): void {
    this.used = 0
  }

  private reserve(size: number): void {
    if (size <= this.buffer.length) return
    const larger = Buffer.allocUnsafeSlow(Math.max(this.buffer.length * 2, size))
    this.buffer.copy(larger, 0, 0, this.used)
    this.buffer = larger
  }
}

/** A folder's path and a slash, followed by one name at a time: no allocation a name. */
class PathBuffer {
  private buffer = Buffer.allocUnsafeSlow(4096)
  private prefix = 0

  start(folder: Buffer): this {
    this.reserve(folder.length + 1)
    folder.copy(this.buffer)
    this.buffer[folder.length] = SLASH
    this.prefix = folder.length + 1
    return this
  }

  with(name: Buffer): Buffer {
    this.reserve(this.prefix + name.length)
    name.copy(this.buffer, this.prefix)
    return this.buffer.subarray(0, this.prefix + name.length)
  }

  private reserve(size: number): void {
    if (size <= this.buffer.length) return
    const larger = Buffer.allocUnsafeSlow(size * 2)
    this.buffer.copy(larger, 0, 0, this.prefix)
    this.buffer = larger
  }
}

/** The listing's buffers, grown to the widest folder so far. */
const scratch = {
  fields: new Float64Array(1024 * ENTRY_FIELDS),
  lengths: new Uint32Array(1024),
  names: new GrowingBytes(),
  path: new PathBuffer(),
  /** Makes room for `count` entries. */
  room(count: number): void {
    if (count <= this.lengths.length) return
    const lengths = new Uint32Array(this.lengths.length * 2)
    lengths.set(this.lengths)
    this.lengths = lengths
    const fields = new Float64Array(lengths.length * ENTRY_FIELDS)
    fields.set(this.fields)
    this.fields = fields
  },
}

function read(batch: ReadBatch & {id: number}): void {
  const answers = new ReadReplyBuilder()
  for (const {expected, index, into, path} of batchReads(batch)) {
    try {
      const descriptor = openListedSync(path, 'file', expected)
      if (descriptor === undefined) {
        answers.gone(index)
      } else if (into === undefined) {
        const {bytes, sha256} = hashWhole(descriptor)
        answers.read(index, bytes, sha256)
      } else {
        const bytes = readWhole(descriptor, into)
        answers.read(index, bytes, createHash('sha256').update(into.subarray(0, bytes)).digest('hex'))
      }
    } catch (error) {
      answers.failed(index, error)
    }
  }

  port.postMessage(answers.reply(batch, batch.id), [batch.contents, batch.paths])
}

/** Reads the file into `into`, up to its length (a file that grew is cut there), and closes it; returns how many bytes it had. */
function readWhole(descriptor: number, into: Buffer): number {
  try {
    let filled = 0
    while (filled < into.length) {
      const bytesRead = readSync(descriptor, into, filled, into.length - filled, null)
      if (bytesRead === 0) break
      filled += bytesRead
    }

    return filled
  } finally {
    closeSync(descriptor)
  }
}

/** Read through, file after file: one buffer for the life of the thread. */
const hashBuffer = Buffer.allocUnsafeSlow(256 * 1024)

/** Hashes the file, and closes it. */
function hashWhole(descriptor: number): {bytes: number; sha256: string} {
  try {
    const hash = createHash('sha256')
    let bytes = 0
    for (;;) {
      const bytesRead = readSync(descriptor, hashBuffer, 0, hashBuffer.length, null)
      if (bytesRead === 0) return {bytes, sha256: hash.digest('hex')}
      hash.update(hashBuffer.subarray(0, bytesRead))
      bytes += bytesRead
    }
  } finally {
    closeSync(descriptor)
  }
}
