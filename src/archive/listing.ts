import {createHash} from 'node:crypto'
import {once} from 'node:events'
import {stat} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable, Writable} from 'node:stream'

import {BackupError} from '../errors.js'
import {createFileSink} from '../lib/file-sink.js'
import {lineBatches} from '../lib/line-batches.js'
import {LISTING_MEMBER, ListingRow, ListingSink} from './media-tar.js'

export const LISTING_FORMAT = 'divio-media-listing'
const SPOOL_BYTES = 64 * 1024

/**
 * Spools MANIFEST.json to a file, one row per line, so that a million files cost disk, not memory.
 * The result is one JSON document: `{"format", "version", "files": [rows…]}`.
 */
export function createListingFile(folder: string): ListingSink {
  const path = join(folder, 'MANIFEST.json')
  let failure: Error | undefined
  // Opened with the first row: an archive stopped before it starts (its reader gone at once) never
  // runs the code that would close it, and a file opened here would stay open until a collection.
  let file: undefined | Writable
  const output = (): Writable => {
    if (file === undefined) {
      file = createFileSink(path, {flags: 'wx', mode: 0o600})
      file.on('error', (error) => {
        failure = error
      })
    }

    return file
  }

  // Rows are copied into buffers of SPOOL_BYTES, written when full: one write per row cost more than
  // the row, and gathering them in one string kept every row's string alive until the write, long
  // enough to be promoted to V8's old generation (tens of MiB of garbage for 100,000 files).
  let spool = Buffer.allocUnsafe(SPOOL_BYTES)
  let filled = spool.write(`{"format":"${LISTING_FORMAT}","version":1,"files":[\n`)
  let separator = ''

  async function write(data: Buffer | string): Promise<void> {
    if (failure) throw failure
    const sink = output()
    if (!sink.write(data)) await once(sink, 'drain')
  }

  function flush(): Promise<void> | undefined {
    if (filled === 0) return
    const full = spool.subarray(0, filled)
    spool = Buffer.allocUnsafe(SPOOL_BYTES)
    filled = 0
    return write(full)
  }

  return {
    add(row: ListingRow) {
      if (failure) throw failure
      output()
      const text = `${separator}${JSON.stringify(row)}`
      separator = ',\n'
      const bytes = Buffer.byteLength(text)
      if (SPOOL_BYTES - filled >= bytes) {
        filled += spool.write(text, filled)
        return
      }

      const flushed = flush()
      if (bytes <= SPOOL_BYTES) {
        filled = spool.write(text)
        return flushed
      }

      // A row larger than the spool (a very long path) is written on its own, after what came before.
      return Promise.all([flushed, write(text)]).then(() => {})
    },
    async discard() {
      if (file === undefined) return
      file.destroy()
      if (!file.closed) await once(file, 'close')
    },
    async finish() {
      await flush()
      await write(`${separator === '' ? '' : '\n'}]}\n`)
      const sink = output()
      sink.end()
      // 'close', not 'finish': the file is closed before its folder can be removed, so no descriptor
      // of a deleted plaintext file outlives the command in a host's process.
      await once(sink, 'close')
      if (failure) throw failure
      return {bytes: (await stat(path)).size, path}
    },
  }
}

/**
 * The rows of a MANIFEST.json as it streams by, in constant memory: as many as each chunk completes.
 * The first line (the format) and the last (closing the list) are not rows; every row but the last
 * ends in a comma.
 *
 * @yields the rows each chunk completes, in archive order
 */
export async function* listingRowBatches(listing: AsyncIterable<Buffer>): AsyncGenerator<ListingRow[], void> {
  for await (const lines of lineBatches(listing)) {
    const rows: ListingRow[] = []
    for (const line of lines) {
      const text = line.endsWith(',') ? line.slice(0, -1) : line
      if (text.startsWith('{') && !text.startsWith('{"format"')) rows.push(JSON.parse(text) as ListingRow)
    }

    if (rows.length > 0) yield rows
  }
}

/**
 * Checks extracted files against an archive's MANIFEST.json in constant memory: both sides are folded
 * into a digest of (path, SHA-256) in archive order, which is the order the listing was written in.
 */
export class ListingCheck {
  private count = 0
  private readonly digest = createHash('sha256')

  /** Records a file as it was extracted or uploaded, in archive order. */
  add(path: string, sha256: string): void {
    this.digest.update(`${JSON.stringify(path)} ${sha256}\n`)
    this.count++
  }

  /** Reads the listing (the archive's last member) and throws an INTEGRITY error unless it matches. */
  async verify(listing?: Readable): Promise<void> {
    if (listing === undefined) {
      throw new BackupError('INTEGRITY', `The media archive has no ${LISTING_MEMBER}: it is damaged or not ours.`, {
        suggestion: 'Restore from another backup; `divio app backup verify` checks them all.',
      })
    }

    const expected = createHash('sha256')
    let listed = 0
    try {
      for await (const rows of listingRowBatches(listing)) {
        for (const row of rows) {
          if (row.type !== 'file') continue
          expected.update(`${JSON.stringify(row.path)} ${row.sha256}\n`)
          listed++
        }
      }
    } catch (error) {
      throw new BackupError('INTEGRITY', `The media archive's ${LISTING_MEMBER} cannot be read.`, {
        cause: error,
        suggestion: 'The archive is damaged; restore from another backup.',
      })
    }

    if (listed !== this.count || expected.digest('hex') !== this.digest.digest('hex')) {
      throw new BackupError(
        'INTEGRITY',
        `The media files do not match the archive's listing (${this.count} extracted, ${listed} listed, or different contents).`,
        {suggestion: 'The archive is damaged; restore from another backup.'},
      )
    }
  }
}
