import {randomInt} from 'node:crypto'
import {once} from 'node:events'
import {createReadStream} from 'node:fs'
import {join} from 'node:path'

import {stopWriterThread} from '../archive/file-writer.js'
import {Manifest} from '../domain/manifest.js'
import {BackupError, describeCause} from '../errors.js'
import {fsPathBelow} from '../lib/byte-names.js'
import {SmallFileReader} from '../lib/file-reader.js'
import {createFileSink} from '../lib/file-sink.js'
import {lineBatches} from '../lib/line-batches.js'
import {LineSpool} from '../lib/line-spool.js'
import {storedMedia} from '../media-format/index.js'
import {DrillCheck} from '../proof/receipt.js'
import {BackupContext} from './context.js'

/**
 * A drill's media: restored into scratch through the media format's own extraction, the one `restore`
 * uses (every file checked as it is written: against the archive's listing, or each blob against its
 * id), with the SHA-256 of every file as written recorded beside it; then read back from disk and
 * checked against that record. Nothing is built and read back on the way (a packed backup's media.tar,
 * or a plaintext copy of a tar-format one in scratch).
 */
export interface ScratchMedia {
  files: number
  folder: string
  /** One line a file written: its SHA-256, a space, and its path below `folder` as a JSON string. */
  record: string
}

/** Restores the backup's media into `scratch`/media, as {@link ScratchMedia} says. */
export async function restoreMediaIntoScratch(
  context: BackupContext,
  manifest: Manifest,
  scratch: string,
): Promise<ScratchMedia> {
  const folder = join(scratch, 'media')
  const record = join(scratch, 'written-files.txt')
  const sink = createFileSink(record, {flags: 'wx', mode: 0o600})
  const lines = new LineSpool(sink)
  // The record is in scratch, in the temp folder: its failures are the temp folder's (see drill.ts).
  const recordFailure = (error: unknown) =>
    new BackupError('OUTPUT_UNAVAILABLE', `Cannot write ${record}: ${describeCause(error)}.`, {cause: error})
  const recorded = (path: string, sha256: string) => {
    try {
      return lines.add(`${sha256} ${JSON.stringify(path)}\n`)?.catch((error: unknown) => {
        throw recordFailure(error)
      })
    } catch (error) {
      throw recordFailure(error)
    }
  }

  try {
    // The format's own temp files (a packed backup's decrypted index) go into scratch too.
    const identities = await context.keys.identities()
    const summary = await storedMedia(manifest)!.extract(context, identities, {
      folder,
      tempDir: scratch,
      written: recorded,
    })
    await lines.end().catch((error: unknown) => {
      throw recordFailure(error)
    })
    // What is left of the drill reads, on the reader thread: the writer's isolate goes now.
    await stopWriterThread()
    return {files: summary.files, folder, record}
  } finally {
    // Closed before scratch is removed: no descriptor of a deleted plaintext file outlives the command.
    if (!sink.closed) {
      sink.destroy()
      await once(sink, 'close')
    }
  }
}

/** How many files a drill hands the reader thread at once to read back from disk. */
const REREAD_BATCH = 64

/** Reads back `percent` of the restored files (each drawn at random) and checks them against the record. */
export async function readBackMedia(
  context: BackupContext,
  media: ScratchMedia,
  percent: number,
): Promise<{check: DrillCheck; files: number}> {
  let recorded = 0
  let reread = 0
  const differing: string[] = []
  // Files are read back and hashed on the reader thread, a batch at a time: for tens of thousands of
  // small files, a round trip each on the main thread cost more than the reading.
  const reader = new SmallFileReader()
  const reading = new Set<Promise<void>>()
  // A read that fails (a file the drill cannot open) ends the drill, after the reads in flight settle.
  let failure: unknown
  const stopped = () => failure !== undefined || context.signal.aborted
  for await (const lines of lineBatches(createReadStream(media.record))) {
    if (stopped()) break
    for (const line of lines) {
      recorded++
      if (percent < 100 && randomInt(100) >= percent) continue
      if (stopped()) break
      reread++
      const sha256 = line.slice(0, 64)
      const path = JSON.parse(line.slice(65)) as string
      const read: Promise<void> = reader
        .hash(fsPathBelow(media.folder, path))
        .then(
          (found) => {
            if (found !== sha256) differing.push(path)
          },
          (error: unknown) => {
            failure ??= error
          },
        )
        .finally(() => reading.delete(read))
      reading.add(read)
      if (reader.queuedCount >= REREAD_BATCH) await reader.flush()
    }
  }

  await reader.flush()
  await Promise.all(reading)
  context.signal.throwIfAborted()
  if (failure !== undefined) throw failure
  differing.sort()
  const ok = differing.length === 0 && recorded === media.files
  return {
    check: {
      detail: ok
        ? `${media.files} files restored and checked as they were written; ${reread} of ${recorded} read back from disk`
        : differing.length > 0
          ? `read back from disk, ${differing.length} files differ from what was restored: ${differing.slice(0, 3).join(', ')}`
          : `${media.files} files restored, but ${recorded} recorded as written`,
      name: 'media',
      ok,
    },
    files: recorded,
  }
}
