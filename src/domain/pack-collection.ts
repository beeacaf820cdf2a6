/**
 * Two-phase garbage collection of packs (DESIGN §14), as a pure function of what the store holds.
 *
 * A pack that no committed backup references is first *condemned*: a marker object is written beside
 * it, and its time is the marker's. Only a later run, at least `graceMs` after the marker, deletes the
 * pack, and only if nothing references it by then. A `create` never reuses a blob of a condemned pack,
 * so a backup that commits while a prune runs references only packs that were not condemned when it
 * started, and a condemned pack that a slow backup still references is pardoned instead of deleted.
 * No lock is needed: the markers and the grace period carry the coordination, as for incomplete backups.
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

export interface PackCollectionPlan {
  /** Unreferenced packs without a marker: write a marker now. */
  condemn: string[]
  /** Unreferenced packs condemned at least the grace period ago: delete the pack, then its marker. */
  delete: string[]
  /** Markers of packs that are gone (a delete that stopped half-way): remove them. */
  dropMarkers: string[]
  /** Condemned packs that a backup references again: remove their marker, keep the pack. */
  pardon: string[]
  /** Condemned, unreferenced packs still within the grace period, with the instant they may go. */
  waiting: {deletableFrom: Date; pack: string}[]
}

export function planPackCollection(input: {
  graceMs: number
  markers: readonly CondemnMarker[]
  now: Date
  packs: readonly ListedPack[]
  /** Every pack named by a committed backup, damaged ones included: what cannot be read is not garbage. */
  referenced: ReadonlySet<string>
}): PackCollectionPlan {
  const {graceMs, now, referenced} = input
  const marked = new Map(input.markers.map((marker) => [marker.pack, marker.condemnedAt]))
  const present = new Set(input.packs.map((pack) => pack.name))
  const plan: PackCollectionPlan = {condemn: [], delete: [], dropMarkers: [], pardon: [], waiting: []}
  for (const {name} of [...input.packs].sort((a, b) => a.name.localeCompare(b.name))) {
    const condemnedAt = marked.get(name)
    if (referenced.has(name)) {
      if (condemnedAt !== undefined) plan.pardon.push(name)
      continue
    }

    if (condemnedAt === undefined) {
      plan.condemn.push(name)
      continue
    }

    const deletableFrom = new Date(condemnedAt.getTime() + graceMs)
    if (now.getTime() >= deletableFrom.getTime()) plan.delete.push(name)
    else plan.waiting.push({deletableFrom, pack: name})
  }

  plan.dropMarkers = [...marked.keys()].filter((pack) => !present.has(pack)).sort()
  return plan
}

/** The packs whose blobs a create must not reuse: every condemned one, whatever its age. */
export function unusablePacks(markers: readonly CondemnMarker[]): Set<string> {
  return new Set(markers.map((marker) => marker.pack))
}
