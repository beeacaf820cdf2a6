import {pipeline as pipelineCallback, Transform} from 'node:stream'
import {finished, pipeline} from 'node:stream/promises'

import {X25519Identity} from '../../archive/age-keys.js'
import {OffThreadHashingStream} from '../../archive/hash.js'
import {isPacked, Manifest, MediaPacksComponent} from '../../domain/manifest.js'
import {BackupError} from '../../errors.js'
import {createFileSink} from '../../lib/file-sink.js'
import {syncPath} from '../../lib/fsync.js'
import {closeOf} from '../../lib/stream-close.js'
import {catalogOf} from '../../services/catalog.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError, readVerified} from '../../services/read.js'
import {BackUpJob, LinkTarget, MediaFormat, StoredMedia, TarStream} from '../port.js'
import {backUpMediaPacks} from './backup.js'
import {readPackTrust} from './check.js'
import {extractPackedMedia} from './extract.js'
import {forwardKey, locatePacks, packsPrefix} from './folder.js'
import {packedMediaTar} from './read.js'
import {linkRecipe} from './recipe.js'
import {verifyPacks, verifyPackSample} from './verify.js'

/**
 * The packs format (incremental media): file contents are cut into blobs, stored once in packs that
 * backups share; a backup's own objects are its index and its rebuild script.
 */
export const packsFormat: MediaFormat = {
  async backUp(context: BackupContext, job: BackUpJob): Promise<MediaPacksComponent> {
    return backUpMediaPacks(context, {
      previous: await previousPacked(context, job.writer.id),
      progress: context.reporter.progress('media'),
      put: (name, source, progress, options) =>
        job.put(name, source, progress, {...options, location: `the media index in ${job.tempDir}`}),
      recipients: job.recipients,
      tempDir: job.tempDir,
      writer: job.writer,
    })
  },
}

/** A packed backup's media: its index and script, and the packs they lead to. */
export function storedPacks(manifest: Manifest, media: MediaPacksComponent): StoredMedia {
  return {
    async checkContent(context, identities, {checked, samplePercent}) {
      return samplePercent === undefined
        ? verifyPacks(context, manifest, identities, checked)
        : verifyPackSample(context, manifest, identities, samplePercent)
    },
    extract: (context, identities, into) => extractPackedMedia(context, manifest, {...into, identities}),
    links: (context) => packLinks(context, manifest, media),
    manifest,
    openTar: (context, identities, tempDir) => openPackedMedia(context, manifest, {identities, tempDir}),
    ownObjects: [media.index, media.rebuild],
    tar: {
      build: (context, identities, path, tempDir) => writePackedMedia(context, manifest, {identities, path, tempDir}),
    },
  }
}

/**
 * What `url` links to beyond the backup's folder: each pack that holds its blobs (`packs/<pack>`),
 * or the copy its signed forward leads to, with that forward; and the recipe that fetches and rebuilds.
 */
async function packLinks(
  context: BackupContext,
  manifest: Manifest,
  media: MediaPacksComponent,
): Promise<{recipe: (links: {name: string; url: string}[]) => string; targets: LinkTarget[]}> {
  const {app, environment, id} = manifest
  const trust = await readPackTrust(context, {app, environment}, [manifest])
  const listed = new Map(trust.folder.packs.map((pack) => [pack.name, pack.bytes]))
  const {missing, stored, via} = locatePacks(media.packs, new Set(listed.keys()), trust.targets)
  if (missing.length > 0) {
    throw new BackupError('INTEGRITY', `Pack ${missing[0]}, which backup ${id} needs, is missing from the store.`, {
      suggestion: `Run \`divio app backup verify ${id}\` to see what is affected.`,
    })
  }

  const prefix = packsPrefix(app, environment)
  const targets: LinkTarget[] = [
    ...stored.map((pack) => ({bytes: listed.get(pack), key: `${prefix}/packs/${pack}`, name: `packs/${pack}`})),
    ...via.map(({from, to}) => ({key: forwardKey(prefix, from, to), name: `packs/${from}.to.${to}.json`})),
  ]
  const recipe = (objects: {name: string; url: string}[]) => {
    const links = objects
      .filter(
        (object) =>
          object.name.startsWith('packs/') || ['manifest.json', media.rebuild.object.name].includes(object.name),
      )
      .map(({name, url}) => ({path: name.startsWith('packs/') ? name : `$ID/${name}`, url}))
    return `${linkRecipe({environment, id, links}).join('\n')}\n`
  }

  return {recipe, targets}
}

/**
 * The newest complete backup whose media this writer packed: its index is encrypted to this writer, so
 * it can be read without the owner's identity. Another writer's index cannot, and is not needed.
 */
async function previousPacked(context: BackupContext, writerId: string): Promise<Manifest | undefined> {
  const {complete} = await catalogOf(context)
  return complete.find(
    ({manifest}) =>
      manifest.signature?.writer === writerId &&
      manifest.components.media !== undefined &&
      isPacked(manifest.components.media),
  )?.manifest
}

/** A packed backup's media.tar, built as it is read, with progress by the bytes of its files. */
async function openPackedMedia(
  context: BackupContext,
  manifest: Manifest,
  options: {identities: readonly X25519Identity[]; tempDir: string},
): Promise<TarStream> {
  const media = manifest.components.media as MediaPacksComponent
  const {stream: archive, summary} = await packedMediaTar(context, manifest, options)
  const progress = context.reporter.progress('media.tar', media.totalFileBytes)
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      progress.advance(chunk.length)
      callback(null, chunk)
    },
  })
  // Destroying what the consumer holds (the meter) stops the archive too, through the pipeline.
  const stream = pipelineCallback(archive, meter, () => {})
  // The rebuild script is not part of the tar, but damage to it still fails whatever reads the backup.
  const script = readVerified(context, manifest, {...media.rebuild, identities: options.identities})
  script.catch(() => {})
  // The archive settles once it has been read to its end, or once it stopped and closed the files it
  // made in tempDir (its listing and the decrypted index). That waits on nothing in the store, not even
  // a pack read that a hung mount holds, so an interruption is still reported at once.
  const archived = Promise.allSettled([summary, finished(stream)]).then(([made, read]) => {
    if (made.status === 'rejected') throw made.reason
    if (read.status === 'rejected') throw read.reason
  })
  const checked = (async () => {
    try {
      await Promise.all([archived, script])
    } catch (error) {
      // A failure reaches a consumer that is still reading, by the stream, as in the tar format; the
      // check settles once the archive's files are closed, so that the caller may remove tempDir.
      stream.destroy(error as Error)
      await archived.catch(() => {})
      throw error
    } finally {
      progress.done()
    }
  })()
  // Marked handled: a consumer that failed on its own may never await it.
  checked.catch(() => {})
  return {checked, stream}
}

/** Writes a packed backup's media.tar, checking every blob and file; resolves with its size and SHA-256. */
async function writePackedMedia(
  context: BackupContext,
  manifest: Manifest,
  options: {identities: readonly X25519Identity[]; path: string; tempDir: string},
): Promise<{bytes: number; sha256: string}> {
  const {checked, stream} = await openPackedMedia(context, manifest, options)
  // On the cipher thread: this one decrypts the packs and checks every blob against its id.
  const hashing = new OffThreadHashingStream()
  const sink = createFileSink(options.path, {flags: 'wx', mode: 0o600, syncs: true})
  const sinkClosed = closeOf(sink)
  const [written, read] = await Promise.allSettled([pipeline(stream, hashing, sink, {signal: context.signal}), checked])
  // A failed pipeline settles as soon as it has destroyed its streams, before the file is closed: the
  // caller removes its folder next, and a file still being opened there made that fail (ENOTEMPTY).
  await sinkClosed
  // Both settled: a read that fails first must not return while the file is still being written, in
  // a folder the caller is about to remove. A failed read says why better than the broken stream.
  if (read.status === 'rejected' && (read.reason instanceof ObjectCheckError || read.reason instanceof BackupError))
    throw read.reason
  if (written.status === 'rejected') throw written.reason
  if (read.status === 'rejected') throw read.reason
  await syncPath(options.path)
  return {bytes: hashing.bytes, sha256: hashing.sha256}
}
