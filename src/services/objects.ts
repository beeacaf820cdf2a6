import {Readable} from 'node:stream'

import {giveBack} from '../lib/buffer-loan.js'
import {Store} from '../store/port.js'

const SMALL_OBJECT_LIMIT = 16 * 1024 * 1024

export class ObjectTooLargeError extends Error {}

/** Reads a small object (a manifest) into memory, refusing anything that is unexpectedly large. */
export async function readSmallObject(store: Store, key: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of await store.get(key)) {
    bytes += (chunk as Buffer).length
    if (bytes > SMALL_OBJECT_LIMIT) throw new ObjectTooLargeError(`${key} is larger than ${SMALL_OBJECT_LIMIT} bytes`)
    chunks.push(chunk as Buffer)
  }

  const whole = Buffer.concat(chunks)
  // Copied: the store's read buffers go back to it for the next object (buffer-loan.ts).
  for (const chunk of chunks) giveBack(chunk)
  return whole
}

export async function putSmallObject(store: Store, key: string, data: Buffer | string): Promise<void> {
  await store.put(key, Readable.from([Buffer.from(data)]))
}
