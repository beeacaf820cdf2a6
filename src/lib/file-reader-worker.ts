import {createHash} from 'node:crypto'
import {closeSync, lstatSync, opendirSync, openSync, readSync, Stats} from 'node:fs'
import {parentPort} from 'node:worker_threads'

import {
  ENTRY_FIELDS,
  EntryKind,
  FolderListing,
  HASH_WHOLE_FILE,
  ListRequest,
  ReadBatch,
  ReadReply,
} from './file-reader.js'

/**
 * The worker side of file-reader.ts, with plain system calls: lists a folder with the lstat of each
 * name, or reads each file of a batch whole into the batch's buffer and hashes it. A file that is gone is answered
 * with -1; any other failure is that file's alone.
 */

const port = parentPort!

port.on('message', (request: (ListRequest | ReadBatch) & {id: number}) => {
  if ('folder' in request) list(request)
  else read(request)
})

/**
 * Lists a folder, names and fields copied into growing buffers as the directory is read: a folder of a
 * million names must not be a million objects in this thread's small heap.
 */
function list(request: ListRequest & {id: number}): void {
  let reply: FolderListing
  try {
    const folder = Buffer.from(request.folder)
    const names = new GrowingBytes(64 * 1024)
    let lengths = new Uint32Array(1024)
    let fields = new Float64Array(1024 * ENTRY_FIELDS)
    let count = 0
    // Names as bytes: they need not be UTF-8. Node.js gives Buffer names for this encoding, as readdir
    // does, though its types only name string encodings.
    const directory = opendirSync(folder, {encoding: 'buffer' as BufferEncoding})
    try {
      for (let entry = directory.readSync(); entry !== null; entry = directory.readSync()) {
        const name = entry.name as unknown as Buffer
        if (count === lengths.length) {
          lengths = grown(lengths, new Uint32Array(count * 2))
          fields = grown(fields, new Float64Array(count * 2 * ENTRY_FIELDS))
        }

        names.append(name)
        lengths[count] = name.length
        const info = lstatSync(Buffer.concat([folder, SLASH, name]), {throwIfNoEntry: false})
        const at = count * ENTRY_FIELDS
        fields[at] = kindOf(info)
        if (info) {
          fields[at + 1] = info.mode
          fields[at + 2] = info.size
          fields[at + 3] = info.mtimeMs
          fields[at + 4] = info.ctimeMs
          fields[at + 5] = info.ino
        }

        count++
      }
    } finally {
      directory.closeSync()
    }

    reply = {
      count,
      entries: fields.buffer.slice(0, count * ENTRY_FIELDS * 8),
      id: request.id,
      nameBytes: names.take(),
      nameLengths: lengths.buffer.slice(0, count * 4),
    }
  } catch (error) {
    const {code, message, path} = error as NodeJS.ErrnoException
    // opendir's errors do not name the folder, as readdir's do.
    const named = path === undefined ? `${message} '${Buffer.from(request.folder).toString()}'` : message
    port.postMessage({failure: {code, message: named}, id: request.id})
    return
  }

  port.postMessage(reply, [reply.entries, reply.nameBytes, reply.nameLengths])
}

function kindOf(info: Stats | undefined): EntryKind {
  if (info === undefined) return EntryKind.Gone
  if (info.isFile()) return EntryKind.File
  if (info.isDirectory()) return EntryKind.Directory
  if (info.isSymbolicLink()) return EntryKind.Symlink
  return EntryKind.Other
}

function grown<T extends Float64Array | Uint32Array>(from: T, to: T): T {
  to.set(from)
  return to
}

/** Bytes appended to a buffer that doubles when full. */
class GrowingBytes {
  private buffer: Buffer
  private used = 0

  constructor(size: number) {
    this.buffer = Buffer.allocUnsafeSlow(size)
  }

  append(bytes: Buffer): void {
    if (this.used + bytes.length > this.buffer.length) {
      const larger = Buffer.allocUnsafeSlow(Math.max(this.buffer.length * 2, this.used + bytes.length))
      this.buffer.copy(larger, 0, 0, this.used)
      this.buffer = larger
    }

    this.used += bytes.copy(this.buffer, this.used)
  }

  /** The bytes appended, in an ArrayBuffer of their own (to transfer). */
  take(): ArrayBuffer {
    return this.buffer.buffer.slice(this.buffer.byteOffset, this.buffer.byteOffset + this.used) as ArrayBuffer
  }
}

const SLASH = Buffer.from('/')

function read(batch: ReadBatch & {id: number}): void {
  const paths = Buffer.from(batch.paths)
  const contents = Buffer.from(batch.contents)
  const lengths: number[] = []
  const digests: ReadReply['digests'] = []
  const failures: ReadReply['failures'] = []
  let pathOffset = 0
  let contentOffset = 0
  for (const [index, size] of batch.sizes.entries()) {
    const path = paths.subarray(pathOffset, pathOffset + batch.pathLengths[index])
    pathOffset += path.length
    try {
      if (size === HASH_WHOLE_FILE) {
        const {bytes, sha256} = hashWhole(path)
        lengths.push(bytes)
        digests[index] = sha256
      } else {
        const into = contents.subarray(contentOffset, contentOffset + size)
        const bytes = readWhole(path, into)
        lengths.push(bytes)
        digests[index] = createHash('sha256').update(into.subarray(0, bytes)).digest('hex')
      }
    } catch (error) {
      const {code, message} = error as NodeJS.ErrnoException
      lengths.push(-1)
      if (code !== 'ENOENT') failures.push({code, index, message})
    }

    contentOffset += Math.max(size, 0)
  }

  const reply: ReadReply = {contents: batch.contents, digests, failures, id: batch.id, lengths, paths: batch.paths}
  port.postMessage(reply, [batch.contents, batch.paths])
}

/** Reads the file into `into`, up to its length (a file that grew is cut there); returns how many bytes it had. */
function readWhole(path: Buffer, into: Buffer): number {
  const descriptor = openSync(path, 'r')
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

function hashWhole(path: Buffer): {bytes: number; sha256: string} {
  const descriptor = openSync(path, 'r')
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
