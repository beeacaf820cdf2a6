import {createHash} from 'node:crypto'
import {rm} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'

import {parseRecipient, X25519Identity} from '../../archive/age-keys.js'
import {readTar} from '../../archive/tar-reader.js'
import {isPacked, Manifest, MediaPacksComponent} from '../../domain/manifest.js'
import {BackupError, describeCause, ExitCode} from '../../errors.js'
import {makeStagingDir, removeStagingDir, tempFolderError} from '../../lib/staging.js'
import {canCompress} from '../../lib/zstd.js'
import {Catalog} from '../../services/catalog.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError} from '../../services/read.js'
import {PackTrust, readPackTrust} from './check.js'
import {damagedBackupFault, PackWorkFault, RepackResult} from './collection.js'
import {packsPrefix, writeForward} from './folder.js'
import {blobKey, blobSize, IndexEntry} from './media-index.js'
import {readIndexFile, readIndexLines} from './read.js'
import {openPack, packPlaintext} from './reader.js'
import {PACK_TARGET_BYTES, PackWriter, WrittenPack} from './writer.js'

/**
 * A pack is rewritten once more than this share of it is dead: then no pack that is kept holds more
 * than 1.2× its live data (dead ≤ 1/6 of the pack ⇔ dead ≤ 1/5 of the live data).
 */
export const REPACK_DEAD_SHARE = 1 / 6
const TAR_BLOCK = 512

/**
 * Repacking (docs/storage.md), for a prune that has the identity: the live blobs of every mostly dead pack
 * are copied into new packs, and each such pack gets a forward to its copy, which supersedes it (see
 * domain/pack-collection.ts). Collection then deletes it, two-phase, as if nothing referenced it.
 *
 * What is live is read from the index of every remaining backup: a blob is live in the pack that holds
 * it now (a pack, or where its forwards lead). Each old pack's live blobs go into one new pack, in
 * their order, so a forward names one pack and a reader reads it in one pass. Nothing is deleted here,
 * and the forwards are written only once every new pack is complete in the store: a prune killed at
 * any point leaves at worst a pack that nothing references, which collection removes.
 */
export async function repackPacks(
  context: BackupContext,
  catalog: Catalog,
  options: {dryRun: boolean; identities: readonly X25519Identity[]; removing: ReadonlySet<string>},
): Promise<RepackResult | undefined> {
  const scope = {app: context.env.app, environment: context.env.name}
  const prefix = packsPrefix(scope.app, scope.environment)
  const trust = await readPackTrust(context, scope)
  const {folder} = trust
  if (folder.packs.length === 0) return undefined
  const empty = {deferred: 0, freedBytes: 0, from: [], into: [], liveBytes: 0}
  const [damaged] = catalog.damaged
  if (damaged) {
    return {
      ...empty,
      fault: damagedBackupFault(damaged.id),
      skipped: `backup ${damaged.id} is damaged, so what its blobs are is not known`,
    }
  }

  const manifests = catalog.complete
    .map(({manifest}) => manifest)
    .filter((manifest): manifest is PackedManifest => !options.removing.has(manifest.id) && hasPacks(manifest))
  const tempDir = await makeStagingDir(context.tempRoot, 'repack')
  const job: RepackJob = {context, identities: options.identities, prefix, tempDir}
  try {
    let live: LiveBlobs
    try {
      live = await liveBlobs(job, manifests, trust, tempDir)
    } catch (error) {
      // Stopped, it is not a fault of the store: the prune ends as stopped.
      context.signal.throwIfAborted()
      const cause = tempFolderError(error, context.tempRoot) ?? error
      return {
        ...empty,
        fault: unreadableIndexFault(cause),
        skipped: `an index could not be read (${describeCause(cause)})`,
      }
    }

    const mostlyDead = folder.packs.filter((pack) => {
      const liveBytes = live.bytes.get(pack.name) ?? 0
      return liveBytes > 0 && 1 - liveBytes / pack.bytes > REPACK_DEAD_SHARE
    })
    // A pack deleted before its minimum storage duration is billed for the rest of it anyway: rewriting
    // it sooner would pay for both copies.
    const billedUntil = (pack: {modifiedAt: Date}) =>
      pack.modifiedAt.getTime() + (context.store.minimumStorageDays ?? 0) * 86_400_000
    const candidates = mostlyDead.filter((pack) => billedUntil(pack) <= context.now().getTime())
    const result: RepackResult = {
      deferred: mostlyDead.length - candidates.length,
      freedBytes: candidates.reduce((sum, pack) => sum + pack.bytes, 0),
      from: candidates.map((pack) => pack.name),
      into: [],
      liveBytes: candidates.reduce((sum, pack) => sum + live.bytes.get(pack.name)!, 0),
    }
    if (options.dryRun || candidates.length === 0) return result
    // Forwards are signed: a prune without a writer key copies nothing it could not vouch for.
    const writer = await context.keys.existingWriterKey()
    if (writer === undefined) return {...result, skipped: 'this machine has no writer key to sign forwards with'}
    // To everyone who can read any of the backups the copies serve (recipients may have changed over time).
    const recipients = [...new Set(manifests.flatMap((manifest) => manifest.encryption.recipients))].map((name) =>
      parseRecipient(name),
    )
    const copied = await copyLiveBlobs(job, candidates, live, recipients)
    const at = context.now()
    const accounted = manifests.map((manifest) => manifest.id)
    for (const {from, to} of copied)
      await writeForward(context.store, prefix, {accounted, at, from, scope, to: to.object}, writer)
    return {
      ...result,
      from: copied.map(({from}) => from),
      into: [...new Set(copied.map(({to}) => to.name))].sort(),
    }
  } finally {
    await removeStagingDir(tempDir)
  }
}

type PackedManifest = Manifest & {components: {media: MediaPacksComponent}}

function hasPacks(manifest: Manifest): manifest is PackedManifest {
  const {media} = manifest.components
  return media !== undefined && isPacked(media)
}

interface LiveBlobs {
  /** Bytes the live blobs take in each pack, tar headers and padding included. */
  bytes: Map<string, number>
  /** Each pack's live blobs, by the first 16 bytes of their id (a collision only keeps a dead blob). */
  ids: Map<string, Set<string>>
}

interface RepackJob {
  context: BackupContext
  identities: readonly X25519Identity[]
  prefix: string
  /** The repack's staging folder: decrypted indexes, and new packs staged for a remote store. */
  tempDir: string
}

async function liveBlobs(
  {context, identities}: RepackJob,
  manifests: readonly PackedManifest[],
  {folder, forwards, targets}: PackTrust,
  tempDir: string,
): Promise<LiveBlobs> {
  const present = new Set(folder.packs.map((pack) => pack.name))
  const superseded = new Set(forwards.map((forward) => forward.from))
  // Any marker, trusted or not: a pack that may be deleted is not one to copy into a new home.
  const condemned = new Set(folder.markers.map((marker) => marker.pack))
  // Where a blob named as in `pack` is held now, if in a pack that may be rewritten.
  const homes = new Map<string, string | undefined>()
  const home = (pack: string): string | undefined => {
    if (!homes.has(pack)) {
      let found: string | undefined
      const pending = [pack]
      const seen = new Set<string>()
      while (pending.length > 0 && found === undefined) {
        const next = pending.shift()!
        if (seen.has(next)) continue
        seen.add(next)
        if (present.has(next) && !superseded.has(next)) found = next
        else pending.push(...(targets.get(next) ?? []))
      }

      // A condemned pack is not copied: a create may not use it, and a backup that names it pardons it.
      homes.set(pack, found !== undefined && condemned.has(found) ? undefined : found)
    }

    return homes.get(pack)
  }

  const live: LiveBlobs = {bytes: new Map(), ids: new Map()}
  for (const manifest of manifests) {
    context.signal.throwIfAborted()
    const path = join(tempDir, `${manifest.id}.index`)
    await readIndexFile(context, manifest, identities, path)
    try {
      for await (const entry of readIndexLines(path)) addLiveOfEntry(live, entry, home)
    } finally {
      await rm(path, {force: true})
    }
  }

  return live
}

function addLiveOfEntry(live: LiveBlobs, entry: IndexEntry, home: (pack: string) => string | undefined): void {
  for (const [position, [id, named]] of (entry.blobs ?? []).entries()) {
    const pack = home(named)
    if (pack === undefined) continue
    const ids = live.ids.get(pack) ?? new Set<string>()
    live.ids.set(pack, ids)
    const key = blobKey(id)
    if (ids.has(key)) continue
    ids.add(key)
    const size = blobSize(entry.size, position)
    live.bytes.set(pack, (live.bytes.get(pack) ?? 0) + TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK)
  }
}

/**
 * Copies the live blobs of each candidate into new packs, each old pack's into one new pack. A blob is
 * checked against its id before it is copied; a pack that fails (damaged, or missing a live blob) is
 * not superseded, and the next verify names it.
 */
async function copyLiveBlobs(
  job: RepackJob,
  candidates: readonly {name: string}[],
  live: LiveBlobs,
  recipients: readonly Uint8Array[],
): Promise<{from: string; to: WrittenPack}[]> {
  const {context, prefix} = job
  const writer = new PackWriter({
    // One codec, so that each old pack's blobs go into one new pack: zstd costs little on what does not shrink.
    codec: canCompress() ? 'zstd' : 'stored',
    // Packs are closed here, between old packs, never inside one.
    packBytes: Number.POSITIVE_INFINITY,
    prefix,
    recipients,
    signal: context.signal,
    stageIn: job.tempDir,
    stallTimeoutMs: context.stallTimeoutMs,
    store: context.store,
  })
  const copied: {from: string; to: string}[] = []
  try {
    for (const {name} of candidates) {
      context.signal.throwIfAborted()
      const wanted = live.ids.get(name)!
      const liveBytes = live.bytes.get(name)!
      if (writer.openBytes > 0 && writer.openBytes + liveBytes > PACK_TARGET_BYTES) await writer.rollover()
      const to = await copyPack(job, name, wanted, writer)
      if (to !== undefined) copied.push({from: name, to})
    }

    const written = new Map((await writer.close()).map((pack) => [pack.name, pack]))
    return copied.map(({from, to}) => ({from, to: written.get(to)!}))
  } catch (error) {
    await writer.abandon(error as Error)
    throw error
  }
}

async function copyPack(
  {context, identities, prefix}: RepackJob,
  name: string,
  wanted: ReadonlySet<string>,
  writer: PackWriter,
): Promise<string | undefined> {
  const {source} = await openPack(context.store, prefix, name)
  let to: string | undefined
  const found = new Set<string>()
  let tar: Readable | undefined
  try {
    tar = (await packPlaintext(source, identities)).tar
    for await (const member of readTar(tar)) {
      const key = /^[\da-f]{64}$/.test(member.path) ? blobKey(member.path) : undefined
      if (key === undefined || !wanted.has(key) || found.has(key)) {
        member.body.resume()
        continue
      }

      const data = await collect(member.body)
      if (createHash('sha256').update(data).digest('hex') !== member.path)
        throw new Error('a blob does not match its id')
      to = await writer.add(member.path, data)
      found.add(key)
    }
  } catch (error) {
    context.reporter.notice(`warning: pack ${name} was not repacked: ${(error as Error).message}`)
    return undefined
  } finally {
    tar?.destroy()
  }

  if (found.size < wanted.size) {
    context.reporter.notice(
      `warning: pack ${name} was not repacked: ${wanted.size - found.size} live blob(s) are not in it`,
    )
    return undefined
  }

  return to
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** An index that could not be read: damaged (exit 4), or a store or temp folder that failed (its own code). */
function unreadableIndexFault(cause: unknown): PackWorkFault {
  const find = 'Run `divio app backup verify --all` to find the backup whose index cannot be read, then prune again.'
  if (cause instanceof BackupError) {
    return {code: cause.code, exitCode: cause.exitCode, suggestion: cause.suggestion ?? find}
  }

  return cause instanceof ObjectCheckError
    ? {code: 'INTEGRITY', exitCode: ExitCode.Integrity, suggestion: find}
    : {
        code: 'STORE_UNAVAILABLE',
        exitCode: ExitCode.Unavailable,
        suggestion: `Check that the store can be read. ${find}`,
      }
}
