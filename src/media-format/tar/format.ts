import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'

import {checkMediaArchive} from '../../archive/archive-check.js'
import {createListingFile} from '../../archive/listing.js'
import {createMediaTar} from '../../archive/media-tar.js'
import {formatBytes} from '../../domain/format.js'
import {Manifest, MediaTarComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {printableName} from '../../lib/byte-names.js'
import {mediaProviderFor} from '../../providers/media/index.js'
import {catalogOf} from '../../services/catalog.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError, readVerified} from '../../services/read.js'
import {extractTarStream} from '../extract-tar.js'
import {BackUpJob, MediaFormat, OwnObject, StoredMedia} from '../port.js'

/**
 * The tar format: a backup's media is one object, media.tar.age, a standard tar whose last member is
 * MANIFEST.json, with the same listing also stored on its own (media.manifest.json.age). A backup is
 * a full copy: nothing is shared between backups.
 */
export const tarFormat: MediaFormat = {
  backUp: backUpMediaTar,
}

/** A tar-format backup's media: its two objects are all there is to check, link or read. */
export function storedTar(manifest: Manifest, media: MediaTarComponent): StoredMedia {
  const archive: OwnObject = {
    compression: media.compression,
    contentCheck: () => archiveContentCheck(media.object.name, media.source),
    object: media.object,
    plaintext: media.plaintext,
  }
  const stored: StoredMedia = {
    // The archive is one of the own objects, read and checked whole, members and listing included
    // (archiveContentCheck), before this is called: there is nothing further, and no share of it to sample. Said, so that --sample is not taken for a sample.
    async checkContent(_context, _identities, {samplePercent}) {
      if (samplePercent === undefined) return []
      return [
        {
          detail: `read whole: --sample applies to incremental media, and this is one archive`,
          name: media.object.name,
          ok: true,
        },
      ]
    },
    async extract(context, identities, {folder, tempDir, written}) {
      return extractTarStream(await stored.openTar(context, identities, tempDir), folder, {
        expectedFiles: media.files,
        signal: context.signal,
        written,
      })
    },
    async links() {
      return {targets: []}
    },
    manifest,
    async openTar(context, identities) {
      const stream = new PassThrough()
      const checked = (async () => {
        await readVerified(context, manifest, {...archive, identities, sink: stream})
        await readVerified(context, manifest, {...media.listing, identities})
      })()
      // A failure reaches a consumer that is still reading, by the stream; one that has not started
      // yet meets a destroyed stream, and `checked` says why (hence no 'error' event goes unheard).
      stream.on('error', () => {})
      checked.catch((error: unknown) => stream.destroy(error as Error))
      return {checked, stream}
    },
    ownObjects: [archive, media.listing],
    // The listing is not written out (the tar holds it as MANIFEST.json), but damage to it still fails.
    tar: {alsoCheck: [media.listing], object: archive},
  }
  return stored
}

async function backUpMediaTar(context: BackupContext, job: BackUpJob): Promise<MediaTarComponent> {
  const {put, tempDir} = job
  const provider = mediaProviderFor(context.env.media!)
  const progress = context.reporter.progress('media')
  // The estimate runs beside the backup and never holds it up: a walk that reads no content, else the
  // previous backup's size. It stops with the archive.
  const estimating = new AbortController()
  if (context.reporter.interactive) {
    const estimate = provider.estimateArchiveBytes
      ? provider.estimateArchiveBytes(AbortSignal.any([context.signal, estimating.signal]))
      : job.previousMediaBytes().then((bytes) => bytes ?? 0)
    estimate.then(
      (bytes) => bytes > 0 && progress.expect(bytes, {estimated: true}),
      () => {},
    )
  }

  const walk = {done: false}
  expectAsManyAsLastTime(context, provider, walk)
  const listingSink = createListingFile(tempDir)
  const onSkip = (path: string, why: string) =>
    context.reporter.notice(`warning: media ${JSON.stringify(printableName(path))} skipped: ${why}`)
  const entries = provider.entries({
    onSkip,
    onWarning: (path, what) => context.reporter.notice(`warning: media ${JSON.stringify(printableName(path))} ${what}`),
    signal: context.signal,
  })
  const {stream, summary} = createMediaTar(entries, listingSink, {onSkip})
  const archive = await put('media.tar.age', stream, progress, {
    location: `the media ${provider.location}`,
  }).finally(() => {
    estimating.abort()
    walk.done = true
  })
  const {files, totalFileBytes} = await summary
  const listingPath = join(tempDir, 'MANIFEST.json')
  const listing = await put(
    'media.manifest.json.age',
    createReadStream(listingPath),
    context.reporter.progress('media listing'),
    {
      bytes: (await stat(listingPath)).size,
      location: `the media listing in the temp folder ${tempDir}`,
    },
  )
  return {compression: 'none', files, listing, ...archive, source: provider.kind, totalFileBytes}
}

/**
 * Tells the provider how many entries the newest backup held, as a packed backup does: past the
 * reader's budget, a large tree's reads go to the reader thread as soon as it is up, instead of after
 * the first 2,000 names are read on this thread, an lstat at a time. A tar-format backup of the bench
 * tree (16,002 files) into a store holding one took 3.57-4.01 s against 3.86-4.16 s. The count is the
 * newest backup's that has media (a database-only backup says nothing of the tree). Not awaited: the
 * walk starts at once, the hint comes when the catalog has been read (the retention after the backup
 * reads it again from what this read keeps), and a catalog that cannot be read, or a walk already
 * done, gives none.
 */
function expectAsManyAsLastTime(
  context: BackupContext,
  provider: ReturnType<typeof mediaProviderFor>,
  walk: {done: boolean},
): void {
  if (provider.expectEntries === undefined) return
  catalogOf(context)
    .then(({complete}) => {
      const withMedia = complete.find(({manifest}) => manifest.components.media !== undefined)
      if (!walk.done) provider.expectEntries?.(withMedia?.manifest.components.media?.files ?? 0)
    })
    // Only a hint: without it the walk starts the reader thread once its budget here is spent.
    .catch(() => {})
}

/**
 * Verify's check of the archive's members as its plaintext streams by: what restore would refuse
 * (an unsafe member, a file that does not match MANIFEST.json) fails verify too.
 */
function archiveContentCheck(
  name: string,
  source: MediaTarComponent['source'],
): {done: Promise<{detail: string; name: string}>; sink: PassThrough} {
  const sink = new PassThrough()
  const done = checkMediaArchive(sink, source).then(
    ({bytes, files}) => {
      // Whatever follows the end of the archive (zero padding) still has to flow for the read to finish.
      sink.resume()
      return {detail: `${files} files (${formatBytes(bytes)}) match its MANIFEST.json`, name: `${name} (members)`}
    },
    (error: unknown) => {
      // What reaches the check has been authenticated: an archive it cannot read was written so.
      const failure =
        error instanceof BackupError && error.code === 'INTEGRITY'
          ? new ObjectCheckError(name, error.message)
          : (error as Error).name === 'AbortError'
            ? error
            : new ObjectCheckError(name, `The media archive is damaged: ${(error as Error).message}.`)
      sink.destroy(failure as Error)
      throw failure
    },
  )
  return {done, sink}
}
