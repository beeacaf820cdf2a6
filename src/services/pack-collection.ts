import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {X25519Identity} from '../archive/age-keys.js'
import {isPacked, Manifest} from '../domain/manifest.js'
import {CondemnMarker, planPackCollection} from '../domain/pack-collection.js'
import {makeStagingDir} from '../lib/staging.js'
import {Catalog} from './catalog.js'
import {BackupContext} from './context.js'
import {readIndexFile, readIndexLines} from './media-packs.js'
import {checkPack, PackTrust, readPackTrust} from './pack-check.js'
import {
  condemnedMarkerKey,
  forwardKey,
  packsPrefix,
  readForward,
  ReadForward,
  readMarker,
  writeCondemnedMarker,
} from './pack-folder.js'
import {ObjectCheckError} from './read.js'

/** What prune did, or would do, with the packs of an environment. */
export interface PackCollectionResult {
  condemned: string[]
  deleted: string[]
  /** Packs a prune would otherwise have condemned or deleted, and why it did not. */
  held: {pack: string; why: string}[]
  /** Markers and forwards that are not signed by a trusted writer: they decide nothing. */
  ignored: string[]
  /** Half-written packs of killed creates, untouched for the grace period: removed. */
  leftovers: string[]
  pardoned: string[]
  /** Mostly dead packs whose live blobs were copied into new packs (a prune with the identity). */
  repacked?: RepackResult
  /** Why nothing was collected, when that is the case for a reason other than "nothing to collect". */
  skipped?: string
  waiting: number
}

export interface RepackResult {
  /** Mostly dead packs left for later: younger than the store's minimum storage duration (S3 Standard-IA: 30 days). */
  deferred: number
  /** Bytes of the superseded packs that are freed once they are deleted. */
  freedBytes: number
  /** The superseded packs. */
  from: string[]
  /** The new packs holding their live blobs. */
  into: string[]
  liveBytes: number
  /** When repacking did not run, why (no identity, a damaged backup). */
  skipped?: string
}

/**
 * Two-phase collection of the packs that no backup references or that repacking superseded (see
 * domain/pack-collection.ts). The references are every pack named by a committed backup that is not
 * being removed, damaged ones included; when a damaged manifest cannot be read at all, nothing is
 * collected, since it may reference any pack. Only markers and forwards signed by a trusted writer
 * count, and markers are written signed, so a prune needs this machine's writer key to condemn.
 * Markers are written before anything is deleted, and a pack's marker goes only after the pack, so
 * an interrupted prune leaves at worst a marker that the next one removes.
 */
export async function collectPacks(
  context: BackupContext,
  catalog: Catalog,
  options: {dryRun: boolean; identities?: readonly X25519Identity[]; removing: ReadonlySet<string>},
): Promise<PackCollectionResult | undefined> {
  const scope = {app: context.env.app, environment: context.env.name}
  const prefix = packsPrefix(scope.app, scope.environment)
  const kept = catalog.complete.filter(({manifest}) => !options.removing.has(manifest.id)).map((b) => b.manifest)
  const trust = await readPackTrust(context, scope, kept, {quiet: true})
  const {folder} = trust
  const {leftovers, packs} = folder
  if (packs.length === 0 && folder.markers.length === 0 && leftovers.length === 0 && folder.forwards.length === 0)
    return undefined
  const empty = {condemned: [], deleted: [], held: [], ignored: [], leftovers: [], pardoned: [], waiting: 0}
  const unreadable = catalog.damaged.find((backup) => backup.manifest === undefined)
  if (unreadable)
    return {...empty, skipped: `backup ${unreadable.id} is damaged and its manifest unreadable, so any pack may be its`}

  const trusted = await context.keys.trustedWriters()
  const markers: (CondemnMarker & {why?: string})[] = []
  for (const listed of folder.markers) {
    const marker = await readMarker(context.store, listed, {scope, trusted})
    if (marker) markers.push(marker)
  }

  // Untrusted forwards too: the plan removes those of packs that are still there.
  const forwards: ReadForward[] = [...trust.forwards]
  for (const listed of folder.forwards) {
    if (trust.forwards.some((forward) => forward.from === listed.from && forward.to === listed.to)) continue
    const forward = await readForward(context.store, listed, {scope, trusted})
    if (forward) forwards.push(forward)
  }

  const graceMs = context.env.retention.incompleteGraceHours * 3_600_000
  const plan = planPackCollection({
    forwards,
    graceMs,
    markers,
    now: context.now(),
    packs,
    references: packReferences(catalog, options.removing),
  })
  const ignored = [
    ...markers
      .filter((marker) => !marker.trusted)
      .map((marker) => `${marker.pack}.condemned: ${marker.why ?? 'untrusted'}`),
    ...forwards
      .filter((forward) => !forward.trusted)
      .map((forward) => `${forward.from}.to.${forward.to}: ${forward.why ?? 'untrusted'}`),
  ]
  if (!options.dryRun) for (const note of ignored) context.reporter.notice(`warning: ignored packs/${note}`)
  // Like an incomplete backup: left alone for the grace period, in case its writer is still running.
  const staleLeftovers = leftovers.filter((object) => context.now().getTime() - object.modifiedAt.getTime() > graceMs)
  const held: PackCollectionResult['held'] = []
  const writer = await context.keys.existingWriterKey()
  if (writer === undefined)
    for (const pack of plan.condemn.splice(0))
      held.push({pack, why: 'not condemned: this machine has no writer key to sign the marker with'})
  let checked = new Map<string, string | undefined>()
  if (plan.deleteAfterCheck.length > 0 && !options.dryRun) {
    if (options.identities === undefined) {
      for (const pack of plan.deleteAfterCheck)
        held.push({pack, why: 'kept until a prune with the identity checks that its copy holds every live blob'})
    } else {
      checked = await checkCopies(context, catalog, {identities: options.identities, trust}, plan.deleteAfterCheck)
    }
  }

  const deleteNow = [...plan.delete, ...[...checked].filter(([, failure]) => failure === undefined).map(([p]) => p)]
  const failedChecks = [...checked].filter(([, failure]) => failure !== undefined)
  for (const [pack, failure] of failedChecks)
    held.push({pack, why: `pardoned: its copy does not hold every live blob (${failure}); its forwards are removed`})
  const result: PackCollectionResult = {
    condemned: plan.condemn,
    deleted: options.dryRun ? [...plan.delete, ...plan.deleteAfterCheck] : deleteNow.sort(),
    held,
    ignored,
    leftovers: staleLeftovers.map((object) => object.key.slice(`${prefix}/packs/`.length)),
    pardoned: [...plan.pardon, ...failedChecks.map(([pack]) => pack)].sort(),
    waiting: plan.waiting.length + (options.identities === undefined ? plan.deleteAfterCheck.length : 0),
  }
  if (options.dryRun) return result
  for (const pack of plan.condemn)
    await writeCondemnedMarker(context.store, prefix, {at: context.now(), pack, scope}, writer!)
  // A pardoned pack loses its forwards first: readers read it, and creates may use it again.
  const unforward = [
    ...plan.unforward,
    ...failedChecks.flatMap(([pack]) => trust.forwards.filter((forward) => forward.from === pack)),
  ]
  for (const {from, to} of unforward) await context.store.delete(forwardKey(prefix, from, to))
  for (const pack of result.pardoned) await context.store.delete(condemnedMarkerKey(prefix, pack))
  for (const pack of deleteNow) {
    context.signal.throwIfAborted()
    await context.store.delete(`${prefix}/packs/${pack}`)
    await context.store.delete(condemnedMarkerKey(prefix, pack))
  }

  for (const pack of plan.dropMarkers) await context.store.delete(condemnedMarkerKey(prefix, pack))
  for (const {key} of staleLeftovers) await context.store.delete(key)
  return result
}

/** Every pack named by a committed backup that is not being removed (damaged ones included), with who names it. */
export function packReferences(catalog: Catalog, removing: ReadonlySet<string>): Map<string, string[]> {
  const references = new Map<string, string[]>()
  for (const manifest of referringManifests(catalog, removing)) {
    const {media} = manifest.components
    if (media && isPacked(media))
      for (const pack of media.packs) references.set(pack, [...(references.get(pack) ?? []), manifest.id])
  }

  return references
}

function referringManifests(catalog: Catalog, removing: ReadonlySet<string>): Manifest[] {
  return [
    ...catalog.complete.filter(({manifest}) => !removing.has(manifest.id)).map(({manifest}) => manifest),
    ...catalog.damaged.map((backup) => backup.manifest!),
  ]
}

/**
 * For each superseded pack that committed backups still reach: whether, once it is gone, every blob
 * they would read from it is where readers will then look (its trusted forwards' targets). Reads the
 * index of every backup and each target whole, every blob authenticated and checked against its id.
 * Resolves with each pack's failure, or undefined for a pack that may go.
 */
async function checkCopies(
  context: BackupContext,
  catalog: Catalog,
  keys: {identities: readonly X25519Identity[]; trust: PackTrust},
  candidates: readonly string[],
): Promise<Map<string, string | undefined>> {
  const {folder, targets} = keys.trust
  const present = new Set(folder.packs.map((pack) => pack.name))
  // Where a reader finds the blobs named as in `pack`: as openPack looks, depth first, in order.
  const resolve = (pack: string, without?: string, seen = new Set<string>()): string | undefined => {
    if (present.has(pack) && pack !== without) return pack
    seen.add(pack)
    for (const target of targets.get(pack) ?? []) {
      if (seen.has(target)) continue
      const found = resolve(target, without, seen)
      if (found !== undefined) return found
    }

    return undefined
  }

  const failures = new Map<string, string | undefined>(candidates.map((pack) => [pack, undefined]))
  const wanted = new Map<string, Map<string, Set<string>>>(candidates.map((pack) => [pack, new Map()]))
  const manifests = referringManifests(catalog, new Set()).filter((manifest) => {
    const {media} = manifest.components
    return media !== undefined && isPacked(media)
  })
  const tempDir = await makeStagingDir(context.tempRoot, 'repack')
  try {
    for (const manifest of manifests) {
      const path = join(tempDir, `${manifest.id}.index`)
      try {
        await readIndexFile(context, manifest, keys.identities, path)
        for await (const entry of readIndexLines(path)) {
          for (const [id, named] of entry.blobs ?? []) {
            const from = resolve(named)
            if (from === undefined || !failures.has(from) || failures.get(from) !== undefined) continue
            const home = resolve(named, from)
            if (home === undefined) {
              failures.set(from, `no copy of blob ${id.slice(0, 12)}… is stored`)
              continue
            }

            const byHome = wanted.get(from)!
            byHome.set(home, (byHome.get(home) ?? new Set()).add(id))
          }
        }
      } catch (error) {
        // What an unreadable index holds is not known: none of the candidates may go.
        const why = `the index of backup ${manifest.id} could not be read (${(error as Error).message})`
        for (const pack of candidates) failures.set(pack, failures.get(pack) ?? why)
      } finally {
        await rm(path, {force: true})
      }
    }

    for (const [pack, byHome] of wanted) {
      for (const [home, ids] of byHome) {
        if (failures.get(pack) !== undefined) break
        try {
          const held = await checkPack(context, prefixOf(context), home, keys)
          const missing = [...ids].filter((id) => !held.ids.has(id))
          if (missing.length > 0) failures.set(pack, `${missing.length} live blob(s) are not in ${home}`)
        } catch (error) {
          if (!(error instanceof ObjectCheckError)) throw error
          failures.set(pack, `${error.objectName}: ${error.message}`)
        }
      }
    }
  } finally {
    await rm(tempDir, {force: true, recursive: true})
  }

  return failures
}

function prefixOf(context: BackupContext): string {
  return packsPrefix(context.env.app, context.env.name)
}
