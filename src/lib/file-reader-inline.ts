import {createHash} from 'node:crypto'
import {Stats} from 'node:fs'
import {lstat, opendir} from 'node:fs/promises'

import {closeFile, readInto} from './file-io.js'
import {
  batchReads,
  ENTRY_FIELDS,
  FolderListing,
  ListRequest,
  ReadBatch,
  ReadReply,
  ReadReplyBuilder,
  setEntryFields,
} from './file-reader-protocol.js'
import {namingFolder, openListed, pathThrough} from './listed-files.js'

/**
 * The reader's requests answered on this thread with the thread pool's asynchronous calls, in the
 * replies file-reader-worker.ts gives: for a small tree, a round trip a call costs less than starting
 * the reader thread. Nothing here blocks this thread: a call that hangs (a dead mount) holds a pool
 * thread, as the large files' streams do.
 */

/**
 * Lists a folder with the lstat of each name, or answers undefined as soon as it holds more than
 * `maxNames` names: a folder that wide is the thread's work, in buffers, not an object a name here.
 */
export async function listHere(request: ListRequest, maxNames: number): Promise<FolderListing | undefined> {
  const folder = Buffer.from(request.folder)
  let through: Buffer = folder
  try {
    // The folder the parent's listing named, or none: listed through its descriptor (listed-files.ts).
    const descriptor = await openListed(folder, request.expect ? 'folder' : 'root', request.expect)
    if (descriptor === undefined) return {...emptyListing(), gone: true}
    try {
      through = pathThrough(descriptor, folder)
      return await listThrough(through, maxNames)
    } finally {
      await closeFile(descriptor)
    }
  } catch (error) {
    const {code, message, path} = error as NodeJS.ErrnoException
    // As the thread words it: opendir's errors do not name the folder, as readdir's do.
    const named = path === undefined ? `${message} '${folder.toString()}'` : message
    return {...emptyListing(), failure: {code, message: namingFolder(named, through, folder)}}
  }
}

function emptyListing(): FolderListing {
  return {count: 0, entries: new ArrayBuffer(0), id: 0, nameBytes: new ArrayBuffer(0), nameLengths: new ArrayBuffer(0)}
}

async function listThrough(folder: Buffer, maxNames: number): Promise<FolderListing | undefined> {
  const names: Buffer[] = []
  // Names as bytes (they need not be UTF-8): Node.js gives Buffer names for this encoding, though
  // its types only name string encodings.
  const directory = await opendir(folder, {encoding: 'buffer' as BufferEncoding})
  for await (const entry of directory) {
    // Leaving the loop closes the folder.
    if (names.length === maxNames) return undefined

    names.push(entry.name as unknown as Buffer)
  }

  const prefix = Buffer.concat([folder, Buffer.from('/')])
  const fields = new Float64Array(names.length * ENTRY_FIELDS)
  // One lstat at a time: on a dead mount, an lstat holds a pool thread until the mount answers, and
  // the pool's other threads must stay free for what a stalled or interrupted command cleans up.
  for (const [index, name] of names.entries()) {
    const info = await lstat(Buffer.concat([prefix, name])).catch((error: NodeJS.ErrnoException): Stats | undefined => {
      // Deleted since the folder was read: the walk reports it, as the thread's `throwIfNoEntry: false`.
      if (error.code === 'ENOENT') return
      throw error
    })
    setEntryFields(fields, index, info)
  }

  const nameBytes = Buffer.concat(names)
  return {
    count: names.length,
    entries: fields.buffer,
    id: 0,
    nameBytes: nameBytes.buffer.slice(nameBytes.byteOffset, nameBytes.byteOffset + nameBytes.length),
    nameLengths: Uint32Array.from(names, (name) => name.length).buffer,
  }
}

/** Reads each file of the batch whole into its place in the batch's buffer, or hashes it, as the thread does. */
export async function readHere(batch: ReadBatch): Promise<ReadReply> {
  const answers = new ReadReplyBuilder()
  for (const {expected, index, into, path} of batchReads(batch)) {
    try {
      const descriptor = await openListed(path, 'file', expected)
      if (descriptor === undefined) {
        answers.gone(index)
      } else if (into === undefined) {
        const {bytes, sha256} = await hashWhole(descriptor)
        answers.read(index, bytes, sha256)
      } else {
        const bytes = await readWhole(descriptor, into)
        answers.read(index, bytes, createHash('sha256').update(into.subarray(0, bytes)).digest('hex'))
      }
    } catch (error) {
      answers.failed(index, error)
    }
  }

  return answers.reply(batch, 0)
}

/** Reads the file into `into`, up to its length (a file that grew is cut there), and closes it; returns how many bytes it had. */
async function readWhole(descriptor: number, into: Buffer): Promise<number> {
  try {
    let filled = 0
    while (filled < into.length) {
      const bytesRead = await readInto(descriptor, into, filled, into.length - filled)
      if (bytesRead === 0) break
      filled += bytesRead
    }

    return filled
  } finally {
    await closeFile(descriptor)
  }
}

/** Hashes the file, and closes it. */
async function hashWhole(descriptor: number): Promise<{bytes: number; sha256: string}> {
  try {
    const hash = createHash('sha256')
    const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES)
    let bytes = 0
    for (;;) {
      const bytesRead = await readInto(descriptor, buffer, 0, buffer.length)
      if (bytesRead === 0) return {bytes, sha256: hash.digest('hex')}
      hash.update(buffer.subarray(0, bytesRead))
      bytes += bytesRead
    }
  } finally {
    await closeFile(descriptor)
  }
}

const HASH_CHUNK_BYTES = 256 * 1024
