import {Stats} from 'node:fs'

import {FileIdentity} from './listed-files.js'

/**
 * What the reader's requests and replies look like (file-reader.ts asks; the reader thread,
 * file-reader-worker.ts, or this thread, file-reader-inline.ts, answers): buffers that can be
 * transferred, never an object a file or a name.
 */

/**
 * Files to read: paths back to back, room for each file's expected size, and for each the device and
 * inode its listing gave (two numbers a file; NaN for a file read without a listing): see listed-files.ts.
 */
export interface ReadBatch {
  contents: ArrayBuffer
  identities: number[]
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

/**
 * A folder to list (its path's bytes), and the device and inode its parent's listing gave: listed only
 * if it is still that folder (listed-files.ts). Without them, the folder is taken as it is found,
 * through a symlink too: the media folder itself.
 */
export interface ListRequest {
  expect?: FileIdentity
  folder: ArrayBuffer
}

/** What a folder holds: names back to back in `nameBytes`, and ENTRY_FIELDS numbers a name in `entries`. */
export interface FolderListing {
  count: number
  /** Per name: EntryKind, mode, size, mtimeMs, ctimeMs, ino, dev (a Float64Array's buffer). */
  entries: ArrayBuffer
  failure?: {code?: string; message: string}
  /** The folder was deleted, or is no longer the one its parent's listing named: nothing was listed. */
  gone?: boolean
  id: number
  nameBytes: ArrayBuffer
  /** A Uint32Array's buffer: the length of each name in `nameBytes`. */
  nameLengths: ArrayBuffer
}

export const ENTRY_FIELDS = 7

export enum EntryKind {
  Directory = 2,
  File = 1,
  Gone = 0,
  Other = 4,
  Symlink = 3,
}

/** A size in ReadBatch.sizes that asks for the file's SHA-256 (ReadReply.digests) instead of its bytes. */
export const HASH_WHOLE_FILE = -1

/** The kind of what lstat said; undefined: the name is gone. */
export function entryKind(info: Stats | undefined): EntryKind {
  if (info === undefined) return EntryKind.Gone
  if (info.isFile()) return EntryKind.File
  if (info.isDirectory()) return EntryKind.Directory
  if (info.isSymbolicLink()) return EntryKind.Symlink
  return EntryKind.Other
}

/** A name's fields in a listing (see FolderListing.entries), from its lstat. */
export function setEntryFields(fields: Float64Array, index: number, info: Stats | undefined): void {
  const at = index * ENTRY_FIELDS
  fields[at] = entryKind(info)
  if (info === undefined) return
  fields[at + 1] = info.mode
  fields[at + 2] = info.size
  fields[at + 3] = info.mtimeMs
  fields[at + 4] = info.ctimeMs
  fields[at + 5] = info.ino
  fields[at + 6] = info.dev
}

/**
 * One file of a read batch: its path, what its listing said it was, and the part of the batch's
 * buffer its bytes go to (none: hash it whole).
 */
export interface BatchRead {
  expected?: FileIdentity
  index: number
  into?: Buffer
  path: Buffer
}

/**
 * The files of a read batch, in order.
 * @yields each file, its path and buffer as views of the batch's buffers
 */
export function* batchReads(batch: ReadBatch): Generator<BatchRead> {
  const paths = Buffer.from(batch.paths)
  const contents = Buffer.from(batch.contents)
  let pathOffset = 0
  let contentOffset = 0
  for (const [index, size] of batch.sizes.entries()) {
    const path = paths.subarray(pathOffset, pathOffset + batch.pathLengths[index])
    pathOffset += path.length
    const dev = batch.identities[2 * index]
    const expected = Number.isNaN(dev) ? undefined : {dev, ino: batch.identities[2 * index + 1]}
    if (size === HASH_WHOLE_FILE) {
      yield {expected, index, path}
    } else {
      yield {expected, index, into: contents.subarray(contentOffset, contentOffset + size), path}
      contentOffset += size
    }
  }
}

/** A read batch's answers, file by file, in the reply's shape: a file that is gone is -1 with no failure. */
export class ReadReplyBuilder {
  private readonly digests: ReadReply['digests'] = []
  private readonly failures: ReadReply['failures'] = []
  private readonly lengths: number[] = []

  failed(index: number, error: unknown): void {
    const {code, message} = error as NodeJS.ErrnoException
    this.lengths[index] = -1
    if (code !== 'ENOENT') this.failures.push({code, index, message})
  }

  /** The file is gone, or is not the one its listing named (listed-files.ts): the walk skips it. */
  gone(index: number): void {
    this.lengths[index] = -1
  }

  read(index: number, bytes: number, sha256: string): void {
    this.lengths[index] = bytes
    this.digests[index] = sha256
  }

  /** The reply, which gives the batch's buffers back. */
  reply(batch: ReadBatch, id: number): ReadReply {
    const {digests, failures, lengths} = this
    return {contents: batch.contents, digests, failures, id, lengths, paths: batch.paths}
  }
}
