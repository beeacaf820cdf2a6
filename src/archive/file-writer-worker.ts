import {createHash} from 'node:crypto'
import {closeSync, fchmodSync, futimesSync, openSync, writeSync} from 'node:fs'
import {parentPort} from 'node:worker_threads'

import {BatchFile, batchFiles, WriteBatch, WrittenBatch} from './file-writer-protocol.js'

/**
 * The writer thread of SmallFileWriter (file-writer.ts): writes each file of a batch with plain system
 * calls, in order, and hashes it. A batch stops at its first failure and reports which file failed;
 * the batch's buffer always goes back, for reuse. file-writer-inline.ts does the same on the main thread.
 */

const port = parentPort!

port.on('message', (batch: WriteBatch & {id: number}) => {
  const hashes: string[] = []
  let failure: WrittenBatch['failure']
  for (const file of batchFiles(batch)) {
    try {
      writeNewFile(file)
    } catch (error) {
      const {code, message} = error as NodeJS.ErrnoException
      failure = {code, index: hashes.length, message}
      break
    }

    hashes.push(createHash('sha256').update(file.data).digest('hex'))
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
function writeNewFile({atCreation, data, mode, mtimeSeconds, path}: BatchFile): void {
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
