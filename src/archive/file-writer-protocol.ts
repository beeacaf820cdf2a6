/**
 * What the writer's batches and answers look like (file-writer.ts sends; the writer thread,
 * file-writer-worker.ts, or this thread, file-writer-inline.ts, writes): one buffer a batch, which is
 * transferred, never an object a file.
 */

/**
 * Each file's path bytes and then its content, back to back in `buffer`; and FILE_FIELDS numbers a
 * file in `files`.
 */
export interface WriteBatch {
  buffer: ArrayBuffer
  /** Per file: path length, content length, mode, mtime in seconds, and 1 when the mode is given at creation. */
  files: number[]
}

/** The answer: the SHA-256 of each file written, in order, up to the first that failed. */
export interface WrittenBatch {
  buffer: ArrayBuffer
  failure?: {code?: string; index: number; message: string}
  hashes: string[]
  id: number
}

export const FILE_FIELDS = 5

/** One file of a batch, as `files` numbers it. */
export interface BatchFile {
  atCreation: boolean
  data: Buffer
  mode: number
  mtimeSeconds: number
  path: Buffer
}

/**
 * The files of a batch, in order.
 * @yields each file, its path and content as views of the batch's buffer
 */
export function* batchFiles(batch: WriteBatch): Generator<BatchFile> {
  const bytes = Buffer.from(batch.buffer)
  let offset = 0
  for (let index = 0; index < batch.files.length; index += FILE_FIELDS) {
    const [pathLength, dataLength, mode, mtimeSeconds, atCreation] = batch.files.slice(index, index + FILE_FIELDS)
    const path = bytes.subarray(offset, offset + pathLength)
    const data = bytes.subarray(offset + pathLength, offset + pathLength + dataLength)
    offset += pathLength + dataLength
    yield {atCreation: atCreation === 1, data, mode, mtimeSeconds, path}
  }
}
