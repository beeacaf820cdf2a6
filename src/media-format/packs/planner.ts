/**
 * Two-phase garbage collection of packs (docs/storage.md), as a pure function of what the store holds.
 *
 * A pack that no committed backup references is first *condemned*: a signed marker object is written
 * beside it. Only a later run, at least `graceMs` after the marker, deletes the pack, and only if
 * nothing references it by then. A marker's time is the later of the time it signs and the time the
 * store took it, so a marker replayed from earlier starts its grace period anew, and no writer can
 * back-date one: the store's clock is not the writer's. A `create` never reuses a blob of a condemned pack,
 * so a backup that commits while a prune runs references only packs that were not condemned when it
 * started, and a condemned pack that a slow backup still references is pardoned instead of deleted.
 * No lock is needed: the markers and the grace period carry the coordination, as for incomplete backups.
 *
 * Repacking adds *forwards*. A prune with the identity copies the live blobs of a mostly dead pack P
 * into a new pack X, then writes a forward P → X that names the backups whose blobs the copy holds
 * (every backup there was when it was made). From then on P is *superseded*: readers read P while it
 * exists and X once it is gone, creates treat P as condemned, and collection condemns P like a pack
 * nothing references. When its grace period is over P is deleted only if every backup that reaches it
 * is accounted for by its forwards; a backup that is not (a create that committed a reference to P
 * while the copy was made, and may use a blob the copy left out) pardons P, and its forwards go. Even
 * then, a P that a committed backup reaches is deleted only after a prune with the identity has read
 * the copy and found every live blob of P in it (`deleteAfterCheck`).
 *
 * Markers and forwards are signed (docs/storage.md); only those of a trusted writer decide anything. What
 * a store writer without a key can plant is ignored, and at worst keeps a pack longer.
 */

export interface ListedPack {
  /** When the store wrote the pack, by its own clock. */
  modifiedAt: Date
  name: string
}

export interface CondemnMarker {
  pack: string
  /** The time the marker's signature covers: when the prune that wrote it condemned the pack. */
  signedAt?: Date
  /** When the store wrote the marker, by its own clock: a marker replayed later counts from then. */
  storedAt: Date
  /** Signed by a trusted writer. Only trusted markers count; others are overwritten or removed. */
  trusted: boolean
}

/** A forward left by repacking: the live blobs of `from` were copied into `to`. */
export interface PackForward {
  /** The backups whose blobs the copy holds: every backup that existed when it was made. */
  accounted: ReadonlySet<string>
  from: string
  to: string
  /** Signed by a trusted writer. An untrusted forward never supersedes anything. */
  trusted: boolean
}

export interface PackCollectionPlan {
  /** Unreferenced or superseded packs without a trusted marker: write a marker now. */
  condemn: string[]
  /** Unreferenced packs condemned at least the grace period ago: delete the pack, then its marker. */
  delete: string[]
  /**
   * Superseded packs that a committed backup still reaches, condemned a grace period ago, whose
   * forwards account for every such backup: deleted only once a prune with the identity has read the
   * forwards' targets and found every live blob of the pack there. A forward is a claim; this checks it.
   */
  deleteAfterCheck: string[]
  /** Markers of packs that are gone (a delete that stopped half-way): remove them. */
  dropMarkers: string[]
  /** Condemned packs that a backup references again, or marked by an untrusted writer: remove their marker, keep the pack. */
  pardon: string[]
  /** Forwards to remove: stale ones, those of pardoned packs, those nothing reaches any more, and untrusted ones of packs that are there. */
  unforward: {from: string; to: string}[]
  /** Markers and forwards that are not signed by a trusted writer, and were ignored. */
  untrusted: {forwards: {from: string; to: string}[]; markers: string[]}
  /** Condemned packs still within the grace period, with the instant they may go. */
  waiting: {deletableFrom: Date; pack: string}[]
}

/** When a marker's grace period starts: its signed time, or when the store took it if that is later. */
export function condemnedAt(marker: CondemnMarker): Date {
  const signed = marker.signedAt?.getTime() ?? 0
  return new Date(Math.max(signed, marker.storedAt.getTime()))
}

export function planPackCollection(input: {
  forwards?: readonly PackForward[]
  graceMs: number
  markers: readonly CondemnMarker[]
  now: Date
  packs: readonly ListedPack[]
  /**
   * Every pack named by a committed backup, damaged ones included (what cannot be read is not
   * garbage), with the ids of the backups that name it.
   */
  references: ReadonlyMap<string, readonly string[]>
}): PackCollectionPlan {
  const {graceMs, now} = input
  const trustedMarkers = new Map(
    input.markers.filter((marker) => marker.trusted).map((marker) => [marker.pack, condemnedAt(marker)]),
  )
  const anyMarker = new Set(input.markers.map((marker) => marker.pack))
  const present = new Set(input.packs.map((pack) => pack.name))
  const plan: PackCollectionPlan = {
    condemn: [],
    delete: [],
    deleteAfterCheck: [],
    dropMarkers: [],
    pardon: [],
    unforward: [],
    untrusted: {
      forwards: (input.forwards ?? []).filter((forward) => !forward.trusted).map(({from, to}) => ({from, to})),
      markers: input.markers.filter((marker) => !marker.trusted).map((marker) => marker.pack),
    },
    waiting: [],
  }
  // An untrusted forward is never followed here. While the pack it names is there, nothing needs it
  // (readers read the pack), so it goes; once the pack is gone, readers may use it, checking each blob.
  plan.unforward.push(...plan.untrusted.forwards.filter((forward) => present.has(forward.from)))
  const trustedForwards = (input.forwards ?? []).filter((forward) => forward.trusted)
  const {forwardsFrom, nowhere} = forwardsLeadingSomewhere(trustedForwards, present)
  plan.unforward.push(...nowhere)
  const reachers = reachingBackups(input.references, forwardsFrom)
  for (const {name} of [...input.packs].sort((a, b) => a.name.localeCompare(b.name))) {
    const markedAt = trustedMarkers.get(name)
    const reachedBy = reachers.get(name)
    const forwards = forwardsFrom.get(name)
    if (reachedBy !== undefined && forwards === undefined) {
      if (anyMarker.has(name)) plan.pardon.push(name)
      continue
    }

    if (markedAt === undefined) {
      plan.condemn.push(name)
      continue
    }

    const deletableFrom = new Date(markedAt.getTime() + graceMs)
    if (now.getTime() < deletableFrom.getTime()) {
      plan.waiting.push({deletableFrom, pack: name})
      continue
    }

    const accounted =
      reachedBy === undefined ||
      forwards!.every((forward) => [...reachedBy].every((backup) => forward.accounted.has(backup)))
    if (!accounted) {
      plan.pardon.push(name)
      for (const forward of forwards!) plan.unforward.push({from: forward.from, to: forward.to})
    } else if (reachedBy === undefined) {
      plan.delete.push(name)
    } else {
      plan.deleteAfterCheck.push(name)
    }
  }

  // Forwards of packs that are gone and that no backup reaches any more have done their work.
  for (const [from, forwards] of forwardsFrom) {
    if (!present.has(from) && !reachers.has(from))
      for (const forward of forwards) plan.unforward.push({from: forward.from, to: forward.to})
  }

  plan.dropMarkers = [...anyMarker].filter((pack) => !present.has(pack)).sort()
  return plan
}

/**
 * The forwards that lead somewhere, by the pack they supersede: their target is there, or is gone but
 * forwards on to a pack that is (a copy of a copy). Those that lead nowhere (a copy that never
 * finished) are to be dropped.
 */
function forwardsLeadingSomewhere(
  forwards: readonly PackForward[],
  present: ReadonlySet<string>,
): {forwardsFrom: Map<string, PackForward[]>; nowhere: {from: string; to: string}[]} {
  const leadsSomewhere = new Set(present)
  for (let grew = true; grew;) {
    grew = false
    for (const {from, to} of forwards) {
      if (!leadsSomewhere.has(from) && leadsSomewhere.has(to)) {
        leadsSomewhere.add(from)
        grew = true
      }
    }
  }

  const forwardsFrom = new Map<string, PackForward[]>()
  const nowhere: {from: string; to: string}[] = []
  for (const forward of forwards) {
    if (leadsSomewhere.has(forward.to))
      forwardsFrom.set(forward.from, [...(forwardsFrom.get(forward.from) ?? []), forward])
    else nowhere.push({from: forward.from, to: forward.to})
  }

  return {forwardsFrom, nowhere}
}

/** For every pack, the backups that reach it: by naming it, or through forwards from a pack they name. */
export function reachingBackups(
  references: ReadonlyMap<string, readonly string[]>,
  forwardsFrom: ReadonlyMap<string, readonly PackForward[]>,
): Map<string, Set<string>> {
  const reachers = new Map<string, Set<string>>()
  for (const [named, backups] of references) {
    const pending = [named]
    const seen = new Set<string>()
    while (pending.length > 0) {
      const pack = pending.pop()!
      if (seen.has(pack)) continue
      seen.add(pack)
      const set = reachers.get(pack) ?? new Set<string>()
      for (const backup of backups) set.add(backup)
      reachers.set(pack, set)
      for (const forward of forwardsFrom.get(pack) ?? []) pending.push(forward.to)
    }
  }

  return reachers
}
