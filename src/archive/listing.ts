import {once} from 'node:events'
import {createWriteStream, WriteStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {join} from 'node:path'

import {ListingRow, ListingSink} from './media-tar.js'

export const LISTING_FORMAT = 'divio-media-listing'

/**
 * Spools MANIFEST.json to a file, one row per line, so that a million files cost disk, not memory.
 * The result is one JSON document: `{"format", "version", "files": [rows…]}`.
 */
export function createListingFile(folder: string): ListingSink {
  const path = join(folder, 'MANIFEST.json')
  const output: WriteStream = createWriteStream(path, {flags: 'wx', mode: 0o600})
  let first = true
  let failure: Error | undefined
  output.on('error', (error) => {
    failure = error
  })

  output.write(`{"format":"${LISTING_FORMAT}","version":1,"files":[\n`)

  async function write(text: string): Promise<void> {
    if (failure) throw failure
    if (!output.write(text)) await once(output, 'drain')
  }

  return {
    async add(row: ListingRow) {
      await write(`${first ? '' : ',\n'}${JSON.stringify(row)}`)
      first = false
    },
    async finish() {
      await write(`${first ? '' : '\n'}]}\n`)
      output.end()
      await once(output, 'finish')
      if (failure) throw failure
      return {bytes: (await stat(path)).size, path}
    },
  }
}
