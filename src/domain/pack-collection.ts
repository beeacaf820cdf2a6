/**
 * Two-phase garbage collection of packs (DESIGN §14), as a pure function of what the store holds.
 *
 * A pack that no committed backup references is first *condemned*: a marker object is written beside
 * it, and its time is the marker's. Only a later run, at least `graceMs` after the marker, deletes the
 * pack, and only if nothing references it by then. A `create` never reuses a blob of a condemned pack,
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
 * while the copy was made, and may use a blob the copy left out) pardons P, and its forwards go.
 */

export interface ListedPack {
  /** When the pack object was last written: a pack younger than the grace period may belong to a running create. */
  modifiedAt: Date
  name: string
}

export interface CondemnMarker {
  /** When the pack was condemned (the marker's own time). */
  condemnedAt: Date
  pack: string
}

/** A forward left by repacking: the live blobs of `from` were copied into `to`. */
export interface PackForward {
  /** The backups whose blobs the copy holds: every backup that existed when it was made. */
  accounted: ReadonlySet<string>
  from: string
  to: string
}

export interface PackCollectionPlan {
  /** Unreferenced or superseded packs without a marker: write a marker now. */
  condemn: string[]
  /** Unreferenced or superseded packs condemned at least the grace period ago: delete the pack, then its marker. */
  delete: string[]
  /** Markers of packs that are gone (a delete that stopped half-way): remove them. */
  dropMarkers: string[]
  /** Condemned packs that a backup references again: remove their marker, keep the pack. */
  pardon: string[]
  /** Forwards to remove: stale ones, those of pardoned packs, and those nothing reaches any more. */
  unforward: {from: string; to: string}[]
  /** Condemned packs still within the grace period, with the instant they may go. */
  waiting: {deletableFrom: Date; pack: string}[]
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
  const marked = new Map(input.markers.map((marker) => [marker.pack, marker.condemnedAt]))
  const present = new Set(input.packs.map((pack) => pack.name))
  const plan: PackCollectionPlan = {condemn: [], delete: [], dropMarkers: [], pardon: [], unforward: [], waiting: []}
  const {forwardsFrom, nowhere} = forwardsLeadingSomewhere(input.forwards ?? [], present)
  plan.unforward.push(...nowhere)
  const reachers = reachingBackups(input.references, forwardsFrom)
  for (const {name} of [...input.packs].sort((a, b) => a.name.localeCompare(b.name))) {
    const condemnedAt = marked.get(name)
    const reachedBy = reachers.get(name)
    const forwards = forwardsFrom.get(name)
    if (reachedBy !== undefined && forwards === undefined) {
      if (condemnedAt !== undefined) plan.pardon.push(name)
      continue
    }

    if (condemnedAt === undefined) {
      plan.condemn.push(name)
      continue
    }

    const deletableFrom = new Date(condemnedAt.getTime() + graceMs)
    if (now.getTime() < deletableFrom.getTime()) {
      plan.waiting.push({deletableFrom, pack: name})
      continue
    }

    const accounted =
      reachedBy === undefined ||
      forwards!.every((forward) => [...reachedBy].every((backup) => forward.accounted.has(backup)))
    if (accounted) {
      plan.delete.push(name)
    } else {
      plan.pardon.push(name)
      for (const forward of forwards!) plan.unforward.push({from: forward.from, to: forward.to})
    }
  }

  // Forwards of packs that are gone and that no backup reaches any more have done their work.
  for (const [from, forwards] of forwardsFrom) {
    if (!present.has(from) && !reachers.has(from))
      for (const forward of forwards) plan.unforward.push({from: forward.from, to: forward.to})
  }

  plan.dropMarkers = [...marked.keys()].filter((pack) => !present.has(pack)).sort()
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
