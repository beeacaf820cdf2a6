import {Stats} from 'node:fs'

/**
 * What the reader's requests and replies look like (file-reader.ts asks; the reader thread,
 * file-reader-worker.ts, or this thread, file-reader-inline.ts, answers): buffers that can be
 * transferred, never an object a file or a name.
 */

/** Files to read: paths back to back, and room for each file's expected size. */
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

/** One file of a read batch: its path, and the part of the batch's buffer its bytes go to (none: hash it whole). */
export interface BatchRead {
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
    if (size === HASH_WHOLE_FILE) {
      yield {index, path}
    } else {
      yield {index, into: contents.subarray(contentOffset, contentOffset + size), path}
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
