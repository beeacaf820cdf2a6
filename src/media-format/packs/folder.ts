import {WriterKey} from '../../archive/writer-key.js'
import {authenticateNote, PackNoteKind, signNote} from '../../domain/authenticity.js'
import {StoredObject} from '../../domain/manifest.js'
import {environmentPrefix} from '../../services/catalog.js'
import {putSmallObject, readSmallObject} from '../../services/objects.js'
import {ObjectInfo, ObjectNotFoundError, Store} from '../../store/port.js'
import {CondemnMarker, ListedPack, PackForward} from './planner.js'

/**
 * What `<app>/<env>/packs/` holds, read from one listing (docs/storage.md):
 *
 *     <32 hex>.age                  a pack
 *     <pack>.condemned              prune's mark: unreferenced since the marker's time
 *     <pack>.to.<other pack>        a forward: the pack's live blobs were copied into the other one
 *     anything else                 what an interrupted write left
 *
 * All of it is named by random pack names only. Markers and forwards are JSON signed by the writer
 * key of the prune that wrote them (see signNote), and name their environment and packs, so that one
 * cannot be moved to another key. A marker holds the time it condemned the pack; a forward, which
 * backups the copy holds, and the size and SHA-256 of the copy (what an export checks it against).
 */

const PACK_NAME = /^[\da-f]{32}\.age$/
const CONDEMNED_SUFFIX = '.condemned'
const FORWARD = /^([\da-f]{32}\.age)\.to\.([\da-f]{32}\.age)$/

export interface ListedForward {
  from: string
  key: string
  to: string
}

export interface ListedMarker {
  key: string
  pack: string
  /** When the store wrote it, by the store's clock. */
  storedAt: Date
}

export interface PackFolder {
  forwards: ListedForward[]
  /** Leftovers of interrupted writes (a killed create's half pack). */
  leftovers: ObjectInfo[]
  markers: ListedMarker[]
  packs: (ListedPack & {bytes: number})[]
}

/** `<app>/<env>`, without the slash: where an environment's backups and its packs folder live. */
export function packsPrefix(app: string, environment: string): string {
  return environmentPrefix(app, environment).slice(0, -1)
}

export function condemnedMarkerKey(prefix: string, pack: string): string {
  return `${prefix}/packs/${pack}${CONDEMNED_SUFFIX}`
}

export function forwardKey(prefix: string, from: string, to: string): string {
  return `${prefix}/packs/${from}.to.${to}`
}

export async function readPackFolder(store: Store, prefix: string): Promise<PackFolder> {
  const folder: PackFolder = {forwards: [], leftovers: [], markers: [], packs: []}
  const start = `${prefix}/packs/`
  for await (const object of store.list(start)) {
    const name = object.key.slice(start.length)
    const forward = FORWARD.exec(name)
    if (PACK_NAME.test(name)) folder.packs.push({bytes: object.bytes, modifiedAt: object.modifiedAt, name})
    else if (name.endsWith(CONDEMNED_SUFFIX) && PACK_NAME.test(name.slice(0, -CONDEMNED_SUFFIX.length)))
      folder.markers.push({key: object.key, pack: name.slice(0, -CONDEMNED_SUFFIX.length), storedAt: object.modifiedAt})
    else if (forward) folder.forwards.push({from: forward[1], key: object.key, to: forward[2]})
    else folder.leftovers.push(object)
  }

  return folder
}

/**
 * What a create may build on: the packs the listing shows, with their sizes, and those it must not
 * reuse: condemned ones and superseded ones, whoever marked them. Being wrong here only costs a read,
 * so any marker or forward counts, signed or not.
 */
export async function packsForCreate(
  store: Store,
  prefix: string,
): Promise<{present: Map<string, number>; unusable: Set<string>}> {
  const {forwards, markers, packs} = await readPackFolder(store, prefix)
  return {
    present: new Map(packs.map((pack) => [pack.name, pack.bytes])),
    unusable: new Set([...forwards.map((forward) => forward.from), ...markers.map((marker) => marker.pack)]),
  }
}

/** Where a reader looks for a pack's blobs once the pack is gone: `from` → every `to`. */
export function forwardTargets(forwards: readonly {from: string; to: string}[]): Map<string, string[]> {
  const targets = new Map<string, string[]>()
  for (const {from, to} of forwards) targets.set(from, [...(targets.get(from) ?? []), to])
  return targets
}

/** Which environment a note belongs to: it is signed, so that a note copied from elsewhere does not count. */
export interface NoteScope {
  app: string
  environment: string
}

export async function writeForward(
  store: Store,
  prefix: string,
  forward: {accounted: readonly string[]; at: Date; from: string; scope: NoteScope; to: StoredObject},
  key: WriterKey,
): Promise<void> {
  const fields = {
    accounted: [...forward.accounted].sort(),
    app: forward.scope.app,
    at: forward.at.toISOString(),
    environment: forward.scope.environment,
    from: forward.from,
    to: forward.to,
  }
  await putSmallObject(
    store,
    forwardKey(prefix, forward.from, forward.to.name),
    `${JSON.stringify(signNote('forward', fields, key))}\n`,
  )
}

export async function writeCondemnedMarker(
  store: Store,
  prefix: string,
  marker: {at: Date; pack: string; scope: NoteScope},
  key: WriterKey,
): Promise<void> {
  const fields = {...marker.scope, at: marker.at.toISOString(), pack: marker.pack}
  await putSmallObject(
    store,
    condemnedMarkerKey(prefix, marker.pack),
    `${JSON.stringify(signNote('condemned', fields, key))}\n`,
  )
}

/** A forward as read and checked, with the copy's size and SHA-256 when it is trusted. */
export type ReadForward = PackForward & {object?: StoredObject; why?: string}

/**
 * A forward with the backups it accounts for, if it is signed by a trusted writer and describes
 * itself (its environment and both packs as its key names them); otherwise untrusted, with why.
 * Undefined when the forward is gone (another prune removed it).
 */
export async function readForward(
  store: Store,
  forward: ListedForward,
  check: {scope: NoteScope; trusted: ReadonlySet<string>},
): Promise<ReadForward | undefined> {
  const body = await readNote(store, forward.key)
  if (body === undefined) return undefined
  const untrusted = (why: string): ReadForward => ({
    accounted: new Set(),
    from: forward.from,
    to: forward.to,
    trusted: false,
    why,
  })
  const verdict = checkNote('forward', body, check)
  if (!verdict.ok) return untrusted(verdict.why)
  const {accounted, from, to} = verdict.fields as {accounted?: unknown; from?: unknown; to?: Partial<StoredObject>}
  if (
    from !== forward.from ||
    to?.name !== forward.to ||
    typeof to.sha256 !== 'string' ||
    typeof to.bytes !== 'number' ||
    !Array.isArray(accounted) ||
    !accounted.every((id) => typeof id === 'string')
  )
    return untrusted('it does not describe the packs its name does')
  return {
    accounted: new Set(accounted as string[]),
    from: forward.from,
    object: {bytes: to.bytes, name: to.name, sha256: to.sha256},
    to: forward.to,
    trusted: true,
  }
}

/** A marker with its times, trusted if signed by a trusted writer for this pack and environment. */
export async function readMarker(
  store: Store,
  marker: ListedMarker,
  check: {scope: NoteScope; trusted: ReadonlySet<string>},
): Promise<(CondemnMarker & {why?: string}) | undefined> {
  const body = await readNote(store, marker.key)
  if (body === undefined) return undefined
  const verdict = checkNote('condemned', body, check)
  const {at, pack} = (verdict.ok ? verdict.fields : {}) as {at?: unknown; pack?: unknown}
  const signedAt = typeof at === 'string' ? new Date(at) : undefined
  if (!verdict.ok || pack !== marker.pack || signedAt === undefined || Number.isNaN(signedAt.getTime()))
    return {
      pack: marker.pack,
      storedAt: marker.storedAt,
      trusted: false,
      why: verdict.ok ? 'it does not describe the pack its name does' : verdict.why,
    }
  return {pack: marker.pack, signedAt, storedAt: marker.storedAt, trusted: true}
}

async function readNote(store: Store, key: string): Promise<Buffer | undefined> {
  try {
    return await readSmallObject(store, key)
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined
    throw error
  }
}

function checkNote(
  kind: PackNoteKind,
  body: Buffer,
  {scope, trusted}: {scope: NoteScope; trusted: ReadonlySet<string>},
): {fields: Record<string, unknown>; ok: true} | {ok: false; why: string} {
  let raw: unknown
  try {
    raw = JSON.parse(body.toString('utf8'))
  } catch {
    return {ok: false, why: 'not a signed note (written by an older version, or planted)'}
  }

  const verdict = authenticateNote(kind, raw, trusted)
  if (!verdict.ok) return verdict
  const fields = raw as Record<string, unknown>
  if (fields.app !== scope.app || fields.environment !== scope.environment)
    return {ok: false, why: `it was written for ${String(fields.app)}/${String(fields.environment)}`}
  return {fields, ok: true}
}

/**
 * The stored packs that hold the blobs of `named` packs: each named pack that is there, and for each
 * one that is gone, the packs its (trusted) forwards lead to, with the forwards followed (`via`).
 * `missing` lists named packs found nowhere.
 */
export function locatePacks(
  named: Iterable<string>,
  present: ReadonlySet<string>,
  targets: ReadonlyMap<string, readonly string[]>,
): {missing: string[]; stored: string[]; via: {from: string; to: string}[]} {
  const stored = new Set<string>()
  const via = new Map<string, {from: string; to: string}>()
  const missing: string[] = []
  for (const name of named) {
    const pending = [name]
    const seen = new Set<string>()
    let found = false
    while (pending.length > 0) {
      const pack = pending.pop()!
      if (seen.has(pack)) continue
      seen.add(pack)
      if (present.has(pack)) {
        stored.add(pack)
        found = true
      } else {
        for (const to of targets.get(pack) ?? []) {
          via.set(`${pack} ${to}`, {from: pack, to})
          pending.push(to)
        }
      }
    }

    if (!found) missing.push(name)
  }

  return {missing, stored: [...stored].sort(), via: [...via.values()]}
}
