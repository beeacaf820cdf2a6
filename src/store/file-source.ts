import {open} from 'node:fs/promises'
import {Readable} from 'node:stream'

import {closeOf} from '../lib/stream-close.js'
import {PutFileOptions, Store} from './port.js'

/**
 * A file as the source of a put, for the stores that send a file as they send any stream. It opens the
 * file only once read, so that a file that cannot be opened fails the put that reads it; tells
 * `onProgress` of its bytes as they are taken; and, however the put ends, is closed by the time the
 * stream is: its caller removes the file next, and one left open would keep its bytes on disk.
 */
export function fileSource(path: string, onProgress?: (bytes: number) => void): Readable {
  return Readable.from(
    (async function* () {
      const handle = await open(path)
      try {
        for await (const chunk of handle.createReadStream({autoClose: false}) as AsyncIterable<Buffer>) {
          onProgress?.(chunk.length)
          yield chunk
        }
      } finally {
        await handle.close()
      }
    })(),
    {objectMode: false},
  )
}

/**
 * putFile for a store that sends a file as it sends any stream (put), which returns only once the
 * file is closed: put may fail (an abort) before its source has finished closing.
 */
export async function putFileAsStream(
  store: Pick<Store, 'put'>,
  key: string,
  path: string,
  options: PutFileOptions = {},
): Promise<{bytes: number}> {
  const source = fileSource(path, options.onProgress)
  try {
    return await store.put(key, source, options)
  } finally {
    await closeOf(source, {destroy: true})
  }
}
