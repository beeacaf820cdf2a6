import {checkMediaArchive} from '../archive/archive-check.js'
import {extractMediaArchive, ExtractOptions, ExtractSummary} from '../archive/extract.js'
import {BackupError} from '../errors.js'
import {removeTree} from '../lib/remove-tree.js'
import {ObjectCheckError} from '../services/read.js'
import {TarStream} from './port.js'

/**
 * Extracts media.tar as it is read from the store (or a staged copy) into `folder`, a new folder, and
 * waits for everything behind the bytes to check out; the folder is removed on any failure. A read
 * that failed explains it better than the extraction: damage in the backup, or a store that went
 * away, reaches the extraction as a broken stream, and the read says where. Once the stream is
 * destroyed, a read that had not failed ends with a premature close, which says nothing.
 */
export async function extractTarStream(
  {checked, stream}: TarStream,
  folder: string,
  options: ExtractOptions & {signal: AbortSignal},
): Promise<ExtractSummary> {
  let summary: ExtractSummary
  try {
    summary = await extractMediaArchive(stream, folder, options)
  } catch (error) {
    throw await readFailureFirst({checked, stream}, error)
  }

  try {
    await checked
  } catch (error) {
    await removeTree(folder)
    throw error
  }

  return summary
}

/**
 * Checks media.tar as it is read, as verify checks it (checkMediaArchive), and writes nothing: for a
 * target that takes the members back as keys (a bucket), where extracting the archive into a folder
 * first would cost its whole size in plaintext, and refuse keys that are a file and the folder of
 * others, which backups made before s3-key-paths.ts hold. A failed read is reported first, as above.
 */
export async function checkTarStream(
  {checked, stream}: TarStream,
  source: 'filesystem' | 's3',
  signal: AbortSignal,
): Promise<void> {
  const stop = () => stream.destroy(signal.reason as Error)
  signal.addEventListener('abort', stop, {once: true})
  try {
    signal.throwIfAborted()
    await checkMediaArchive(stream, source)
  } catch (error) {
    throw await readFailureFirst({checked, stream}, signal.aborted ? signal.reason : error)
  } finally {
    signal.removeEventListener('abort', stop)
  }

  await checked
}

/** Stops the read, and gives its own failure where it has one (see extractTarStream), else `error`. */
async function readFailureFirst({checked, stream}: TarStream, error: unknown): Promise<unknown> {
  stream.destroy()
  try {
    await checked
  } catch (readError) {
    if (readError instanceof ObjectCheckError || readError instanceof BackupError) return readError
  }

  return error
}
