import {closeSync, lstatSync, openSync, readdirSync, readSync} from 'node:fs'
import {parentPort} from 'node:worker_threads'

import {ENTRY_FIELDS, EntryKind, FolderListing, ListRequest, ReadBatch, ReadReply} from './file-reader.js'

/**
 * The worker side of file-reader.ts, with plain system calls: lists a folder with the lstat of each
 * name, or reads each file of a batch whole into the batch's buffer. A file that is gone is answered
 * with -1; any other failure is that file's alone.
 */

const port = parentPort!

port.on('message', (request: (ListRequest | ReadBatch) & {id: number}) => {
  if ('folder' in request) list(request)
  else read(request)
})

function list(request: ListRequest & {id: number}): void {
  let reply: FolderListing
  try {
    const folder = Buffer.from(request.folder)
    const names = readdirSync(folder, {encoding: 'buffer'})
    const nameBytes = Buffer.allocUnsafeSlow(names.reduce((sum, name) => sum + name.length, 0))
    const nameLengths: number[] = []
    const entries = new Float64Array(names.length * ENTRY_FIELDS)
    let offset = 0
    for (const [index, name] of names.entries()) {
      offset += name.copy(nameBytes, offset)
      nameLengths.push(name.length)
      const info = lstatSync(Buffer.concat([folder, SLASH, name]), {throwIfNoEntry: false})
      const kind =
        info === undefined
          ? EntryKind.Gone
          : info.isFile()
            ? EntryKind.File
            : info.isDirectory()
              ? EntryKind.Directory
              : info.isSymbolicLink()
                ? EntryKind.Symlink
                : EntryKind.Other
      entries.set(
        info ? [kind, info.mode, info.size, info.mtimeMs, info.ctimeMs, info.ino] : [kind, 0, 0, 0, 0, 0],
        index * ENTRY_FIELDS,
      )
    }

    reply = {entries: entries.buffer, id: request.id, nameBytes: nameBytes.buffer as ArrayBuffer, nameLengths}
  } catch (error) {
    const {code, message} = error as NodeJS.ErrnoException
    port.postMessage({failure: {code, message}, id: request.id})
    return
  }

  port.postMessage(reply, [reply.entries, reply.nameBytes])
}

const SLASH = Buffer.from('/')

function read(batch: ReadBatch & {id: number}): void {
  const paths = Buffer.from(batch.paths)
  const contents = Buffer.from(batch.contents)
  const lengths: number[] = []
  const failures: ReadReply['failures'] = []
  let pathOffset = 0
  let contentOffset = 0
  for (const [index, size] of batch.sizes.entries()) {
    const path = paths.subarray(pathOffset, pathOffset + batch.pathLengths[index])
    pathOffset += path.length
    try {
      lengths.push(readWhole(path, contents.subarray(contentOffset, contentOffset + size)))
    } catch (error) {
      const {code, message} = error as NodeJS.ErrnoException
      lengths.push(-1)
      if (code !== 'ENOENT') failures.push({code, index, message})
    }

    contentOffset += size
  }

  const reply: ReadReply = {contents: batch.contents, failures, id: batch.id, lengths, paths: batch.paths}
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
