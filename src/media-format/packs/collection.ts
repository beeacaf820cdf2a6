import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {X25519Identity} from '../../archive/age-keys.js'
import {isPacked, Manifest} from '../../domain/manifest.js'
import {describeCause, ErrorCode, ExitCode} from '../../errors.js'
import {makeStagingDir, removeStagingDir, tempFolderError} from '../../lib/staging.js'
import {Catalog} from '../../services/catalog.js'
import {BackupContext} from '../../services/context.js'
import {ObjectCheckError} from '../../services/read.js'
import {checkPack, PackTrust, readPackTrust} from './check.js'
import {
  condemnedMarkerKey,
  forwardKey,
  NoteScope,
  packsPrefix,
  readForward,
  ReadForward,
  readMarker,
  writeCondemnedMarker,
} from './folder.js'
import {blobKey, IndexEntry} from './media-index.js'
import {CondemnMarker, planPackCollection} from './planner.js'
import {readIndexFile, readIndexLines} from './read.js'
import {packCandidates} from './reader.js'

/**
 * Why a step of the pack work did not run, when that is a fault to mend (a damaged backup, an index
 * that cannot be read) rather than a setting of this machine (no identity, no writer key): the error's
 * code, the exit code prune ends with once it has done the rest, and what to do.
 */
export interface PackWorkFault {
  code: ErrorCode
  exitCode: number
  suggestion: string
}

/** A damaged backup that stops the pack work until it is checked, and deleted if it is damaged. */
export function damagedBackupFault(id: string): PackWorkFault {
  return {
    code: 'INTEGRITY',
    exitCode: ExitCode.Integrity,
    suggestion: `Check it with \`divio app backup verify ${id}\`; if it is damaged, delete it with \`divio app backup delete ${id}\`, then prune again.`,
  }
}

/** What prune did, or would do, with the packs of an environment. */
export interface PackCollectionResult {
  condemned: string[]
  deleted: string[]
  /** Set when nothing was collected because of a fault (see `skipped`). */
  fault?: PackWorkFault
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
  /** Set when repacking did not run because of a fault (see `skipped`). */
  fault?: PackWorkFault
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
    return {
      ...empty,
      fault: damagedBackupFault(unreadable.id),
      skipped: `backup ${unreadable.id} is damaged and its manifest unreadable, so any pack may be its`,
    }

  const {forwards, ignored, markers} = await readNotes(context, trust, scope)
  const graceMs = context.env.retention.incompleteGraceHours * 3_600_000
  const plan = planPackCollection({
    forwards,
    graceMs,
    markers,
    now: context.now(),
    packs,
    references: packReferences(catalog, options.removing),
  })
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
    held.push({pack, why: `pardoned: its copy does not hold every live blob (${failure})`})
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
  // A pack pardoned by the plan loses its forwards first: readers read it, and creates may use it
  // again. One whose copy failed the check keeps them: a forward that is partly false may still lead
  // to blobs only its target holds. The next prune condemns it again, and says so again.
  const {unforward} = plan
  await removeInOrder(context, prefix, {
    dropMarkers: plan.dropMarkers,
    leftovers: staleLeftovers.map(({key}) => key),
    packs: deleteNow,
    pardoned: result.pardoned,
    unforward,
  })
  return result
}

/** Forwards, then markers of pardoned packs, then each pack before its marker, then what is left over. */
async function removeInOrder(
  context: BackupContext,
  prefix: string,
  remove: {
    dropMarkers: string[]
    leftovers: string[]
    packs: string[]
    pardoned: string[]
    unforward: {from: string; to: string}[]
  },
): Promise<void> {
  const {store} = context
  for (const {from, to} of remove.unforward) await store.delete(forwardKey(prefix, from, to))
  for (const pack of remove.pardoned) await store.delete(condemnedMarkerKey(prefix, pack))
  for (const pack of remove.packs) {
    context.signal.throwIfAborted()
    await store.delete(`${prefix}/packs/${pack}`)
    await store.delete(condemnedMarkerKey(prefix, pack))
  }

  for (const pack of remove.dropMarkers) await store.delete(condemnedMarkerKey(prefix, pack))
  for (const key of remove.leftovers) await store.delete(key)
}

/**
 * Every marker and forward beside the packs, read and checked, untrusted ones included (the plan
 * removes or overwrites them), with a line for each untrusted one.
 */
async function readNotes(
  context: BackupContext,
  trust: PackTrust,
  scope: NoteScope,
): Promise<{forwards: ReadForward[]; ignored: string[]; markers: (CondemnMarker & {why?: string})[]}> {
  const trusted = await context.keys.trustedWriters()
  const markers: (CondemnMarker & {why?: string})[] = []
  for (const listed of trust.folder.markers) {
    const marker = await readMarker(context.store, listed, {scope, trusted})
    if (marker) markers.push(marker)
  }

  const forwards: ReadForward[] = [...trust.forwards]
  for (const listed of trust.folder.forwards) {
    if (trust.forwards.some((forward) => forward.from === listed.from && forward.to === listed.to)) continue
    const forward = await readForward(context.store, listed, {scope, trusted})
    if (forward) forwards.push(forward)
  }

  const ignored = [
    ...markers
      .filter((marker) => !marker.trusted)
      .map((marker) => `${marker.pack}.condemned: ${marker.why ?? 'untrusted'}`),
    ...forwards
      .filter((forward) => !forward.trusted)
      .map((forward) => `${forward.from}.to.${forward.to}: ${forward.why ?? 'untrusted'}`),
  ]
  return {forwards, ignored, markers}
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
  const present = new Set(keys.trust.folder.packs.map((pack) => pack.name))
  const failures = new Map<string, string | undefined>(candidates.map((pack) => [pack, undefined]))
  // Where a reader looks for the blobs named as in `named`: the packs there, in PackReader's order.
  const where = (named: string) => packCandidates(named, keys.trust.targets).filter((pack) => present.has(pack))
  const involved = await blobsInvolving(context, catalog, {failures, identities: keys.identities, where})
  // The candidates go together: every blob one of them may serve now must be found in a pack that
  // stays, so two forwards that point at each other cannot each vouch for the other's pack. The pack
  // that holds a blob found nowhere else stays, and the rest are checked again, until all hold.
  const going = new Set(candidates.filter((pack) => failures.get(pack) === undefined))
  const holdings = new Map<string, Set<string>>()
  const holds = async (pack: string, id: string) => {
    if (!holdings.has(pack)) holdings.set(pack, await blobsOf(context, pack, keys))
    return holdings.get(pack)!.has(id)
  }

  for (let changed = true; changed;) {
    changed = false
    for (const [id, packs] of involved) {
      const leaving = packs.filter((pack) => going.has(pack))
      if (leaving.length === 0) continue
      if (
        await someAsync(
          packs.filter((pack) => !going.has(pack)),
          (pack) => holds(pack, id),
        )
      )
        continue
      const keeper = (await findAsync(leaving, (pack) => holds(pack, id))) ?? leaving[0]
      failures.set(keeper, `blob ${id.slice(0, 12)}… would be found in no pack that stays`)
      going.delete(keeper)
      changed = true
      break
    }
  }

  return failures
}

async function someAsync<T>(items: readonly T[], test: (item: T) => Promise<boolean>): Promise<boolean> {
  return (await findAsync(items, test)) !== undefined
}

async function findAsync<T>(items: readonly T[], test: (item: T) => Promise<boolean>): Promise<T | undefined> {
  for (const item of items) if (await test(item)) return item
  return undefined
}

/** The ids of the blobs a pack holds, each checked; none when it fails its check. */
async function blobsOf(
  context: BackupContext,
  pack: string,
  keys: {identities: readonly X25519Identity[]; trust: PackTrust},
): Promise<Set<string>> {
  try {
    return (await checkPack(context, prefixOf(context), pack, keys)).ids
  } catch (error) {
    if (!(error instanceof ObjectCheckError)) throw error
    context.reporter.notice(`warning: ${error.objectName} failed its check (${error.message}): no copy counts on it`)
    return new Set()
  }
}

/**
 * Every blob of every backup that a reader may look for in one of the candidates, with the packs it
 * looks in, in order. A candidate whose blobs cannot all be known (an index that cannot be read) fails.
 */
async function blobsInvolving(
  context: BackupContext,
  catalog: Catalog,
  {
    failures,
    identities,
    where,
  }: {
    failures: Map<string, string | undefined>
    identities: readonly X25519Identity[]
    where: (named: string) => string[]
  },
): Promise<[string, string[]][]> {
  // Once each: a blob many backups share is checked once.
  const involved = new Map<string, [string, string[]]>()
  const places = new Map<string, string[]>()
  const manifests = referringManifests(catalog, new Set()).filter((manifest) => {
    const {media} = manifest.components
    return media !== undefined && isPacked(media)
  })
  const tempDir = await makeStagingDir(context.tempRoot, 'repack')
  try {
    for (const manifest of manifests) {
      const path = join(tempDir, `${manifest.id}.index`)
      try {
        await readIndexFile(context, manifest, identities, path)
        for await (const entry of readIndexLines(path)) noteInvolved(entry, {failures, involved, places, where})
      } catch (error) {
        // What an unreadable index holds is not known: none of the candidates may go.
        const why = `the index of backup ${manifest.id} could not be read (${describeCause(tempFolderError(error, context.tempRoot) ?? error)})`
        for (const pack of failures.keys()) failures.set(pack, failures.get(pack) ?? why)
      } finally {
        await rm(path, {force: true})
      }
    }
  } finally {
    await removeStagingDir(tempDir)
  }

  return [...involved.values()]
}

function noteInvolved(
  entry: IndexEntry,
  {
    failures,
    involved,
    places,
    where,
  }: {
    failures: ReadonlyMap<string, unknown>
    involved: Map<string, [string, string[]]>
    places: Map<string, string[]>
    where: (named: string) => string[]
  },
): void {
  for (const [id, named] of entry.blobs ?? []) {
    if (!places.has(named)) places.set(named, where(named))
    const packs = places.get(named)!
    if (packs.some((pack) => failures.has(pack))) involved.set(`${blobKey(id)}${named}`, [id, packs])
  }
}

function prefixOf(context: BackupContext): string {
  return packsPrefix(context.env.app, context.env.name)
}
