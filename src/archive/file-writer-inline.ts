import {createHash} from 'node:crypto'
import {open} from 'node:fs/promises'

import {BatchFile, batchFiles, WriteBatch, WrittenBatch} from './file-writer-protocol.js'

/**
 * A batch written on this thread with the thread pool's asynchronous calls, with the answer the writer
 * thread (file-writer-worker.ts) gives, file for file and failure for failure: for a small restore, a
 * round trip a call costs less than starting the thread.
 */
export async function writeHere(batch: WriteBatch): Promise<WrittenBatch> {
  const hashes: string[] = []
  let failure: WrittenBatch['failure']
  for (const file of batchFiles(batch)) {
    try {
      await writeNewFile(file)
    } catch (error) {
      const {code, message} = error as NodeJS.ErrnoException
      failure = {code, index: hashes.length, message}
      break
    }

    hashes.push(createHash('sha256').update(file.data).digest('hex'))
  }

  return {buffer: batch.buffer, failure, hashes, id: 0}
}

/** As the thread writes it: "wx", and the mode at creation or once written, on the one descriptor. */
async function writeNewFile({atCreation, data, mode, mtimeSeconds, path}: BatchFile): Promise<void> {
  const file = await open(path, 'wx', atCreation ? mode : 0o600)
  try {
    for (let written = 0; written < data.length;) {
      written += (await file.write(data, written, data.length - written)).bytesWritten
    }

    if (!atCreation) await file.chmod(mode)
    await file.utimes(mtimeSeconds, mtimeSeconds)
  } finally {
    await file.close()
  }
}
