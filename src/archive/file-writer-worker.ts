import {createHash} from 'node:crypto'
import {closeSync, fchmodSync, futimesSync, openSync, writeSync} from 'node:fs'
import {parentPort} from 'node:worker_threads'

import {FILE_FIELDS, WriteBatch, WrittenBatch} from './file-writer.js'

/**
 * The worker side of SmallFileWriter (file-writer.ts): writes each file of a batch with plain system
 * calls, in order, and hashes it. A batch stops at its first failure and reports which file failed;
 * the batch's buffer always goes back, for reuse.
 */

const port = parentPort!

port.on('message', (batch: WriteBatch & {id: number}) => {
  const bytes = Buffer.from(batch.buffer)
  const hashes: string[] = []
  let failure: WrittenBatch['failure']
  let offset = 0
  for (let index = 0; index < batch.files.length; index += FILE_FIELDS) {
    const [pathLength, dataLength, mode, mtimeSeconds, atCreation] = batch.files.slice(index, index + FILE_FIELDS)
    const path = bytes.subarray(offset, offset + pathLength)
    const data = bytes.subarray(offset + pathLength, offset + pathLength + dataLength)
    offset += pathLength + dataLength
    try {
      writeNewFile(path, data, {atCreation: atCreation === 1, mode, mtimeSeconds})
    } catch (error) {
      const {code, message} = error as NodeJS.ErrnoException
      failure = {code, index: hashes.length, message}
      break
    }

    hashes.push(createHash('sha256').update(data).digest('hex'))
  }

  const reply: WrittenBatch = {buffer: batch.buffer, failure, hashes, id: batch.id}
  port.postMessage(reply, [batch.buffer])
})

/**
 * A file that must not exist yet ("wx": never through a symlink), with exactly `mode` and the mtime,
 * all on its one descriptor. A mode the umask leaves whole is given at creation (`atCreation`), which
 * saves a call; otherwise the file is made private and gets its mode once written (the descriptor that
 * creates a file may write it, even a read-only one).
 */
function writeNewFile(
  path: Buffer,
  data: Buffer,
  {atCreation, mode, mtimeSeconds}: {atCreation: boolean; mode: number; mtimeSeconds: number},
): void {
  const descriptor = openSync(path, 'wx', atCreation ? mode : 0o600)
  try {
    for (let written = 0; written < data.length;) {
      written += writeSync(descriptor, data, written, data.length - written)
    }

    if (!atCreation) fchmodSync(descriptor, mode)
    futimesSync(descriptor, mtimeSeconds, mtimeSeconds)
  } finally {
    closeSync(descriptor)
  }
}
