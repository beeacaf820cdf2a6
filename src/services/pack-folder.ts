import {CondemnMarker, ListedPack, PackForward} from '../domain/pack-collection.js'
import {ObjectInfo, ObjectNotFoundError, Store} from '../store/port.js'
import {environmentPrefix} from './catalog.js'
import {putSmallObject, readSmallObject} from './objects.js'

/**
 * What `<app>/<env>/packs/` holds, read from one listing (DESIGN §14):
 *
 *     <32 hex>.age                  a pack
 *     <pack>.condemned              prune's mark: unreferenced since the marker's time
 *     <pack>.to.<other pack>        a forward: the pack's live blobs were copied into the other one
 *     anything else                 what an interrupted write left
 *
 * All of it is named by random pack names only. A forward's body says which backups the copy holds
 * ({"accounted": [ids], "at": ISO time}); only prune reads it.
 */

const PACK_NAME = /^[\da-f]{32}\.age$/
const CONDEMNED_SUFFIX = '.condemned'
const FORWARD = /^([\da-f]{32}\.age)\.to\.([\da-f]{32}\.age)$/

export interface ListedForward {
  from: string
  key: string
  to: string
}

export interface PackFolder {
  forwards: ListedForward[]
  /** Leftovers of interrupted writes (a killed create's half pack). */
  leftovers: ObjectInfo[]
  markers: CondemnMarker[]
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
      folder.markers.push({condemnedAt: object.modifiedAt, pack: name.slice(0, -CONDEMNED_SUFFIX.length)})
    else if (forward) folder.forwards.push({from: forward[1], key: object.key, to: forward[2]})
    else folder.leftovers.push(object)
  }

  return folder
}

/** The packs whose blobs a create must not reuse: condemned ones, and superseded ones (copied elsewhere). */
export async function unusablePacks(store: Store, prefix: string): Promise<Set<string>> {
  const {forwards, markers} = await readPackFolder(store, prefix)
  return new Set([...forwards.map((forward) => forward.from), ...markers.map((marker) => marker.pack)])
}

/** Where a reader looks for a pack's blobs once the pack is gone: `from` → every `to`. */
export function forwardTargets(forwards: readonly ListedForward[]): Map<string, string[]> {
  const targets = new Map<string, string[]>()
  for (const {from, to} of forwards) targets.set(from, [...(targets.get(from) ?? []), to])
  return targets
}

export async function writeForward(
  store: Store,
  prefix: string,
  forward: {accounted: readonly string[]; at: Date; from: string; to: string},
): Promise<void> {
  const body = {accounted: [...forward.accounted].sort(), at: forward.at.toISOString()}
  await putSmallObject(store, forwardKey(prefix, forward.from, forward.to), `${JSON.stringify(body)}\n`)
}

/**
 * A forward with the backups it accounts for. A body that cannot be read accounts for none: the pack
 * it supersedes is then kept for any backup that reaches it (the safe side). Undefined when the
 * forward is gone (another prune removed it).
 */
export async function readForward(store: Store, forward: ListedForward): Promise<PackForward | undefined> {
  let body: Buffer
  try {
    body = await readSmallObject(store, forward.key)
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined
    throw error
  }

  let accounted: string[] = []
  try {
    const parsed = JSON.parse(body.toString('utf8')) as {accounted?: unknown}
    if (Array.isArray(parsed.accounted)) accounted = parsed.accounted.filter((id) => typeof id === 'string')
  } catch {
    // Accounts for none.
  }

  return {accounted: new Set(accounted), from: forward.from, to: forward.to}
}

/**
 * The stored packs that hold the blobs of `named` packs: each named pack that is there, and for each
 * one that is gone, the packs its forwards lead to. `missing` lists named packs found nowhere.
 */
export function locatePacks(named: Iterable<string>, folder: PackFolder): {missing: string[]; stored: string[]} {
  const present = new Set(folder.packs.map((pack) => pack.name))
  const targets = forwardTargets(folder.forwards)
  const stored = new Set<string>()
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
        pending.push(...(targets.get(pack) ?? []))
      }
    }

    if (!found) missing.push(name)
  }

  return {missing, stored: [...stored].sort()}
}
