import {mediaView} from '../domain/backup.js'
import {Catalog} from '../services/catalog.js'

/**
 * Whether an environment's backups are fresh: pure, from its catalog and `now`, so that the boundary of
 * `status --max-age` is a function, not a race with the clock.
 */

/** The newest complete backup of an environment, as `status` shows it. */
export interface NewestBackup {
  ageSeconds: number
  completedAt: string
  createdAt: string
  /** From the start of the backup to its commit. */
  durationSeconds: number
  id: string
}

/** Per component (database, media): the newest complete backup that holds it. */
export interface ComponentFreshness {
  bytes: number
  completedAt: string
  durationSeconds: number
  id: string
}

export interface Freshness {
  components: {database?: ComponentFreshness; media?: ComponentFreshness}
  /** Committed backups whose manifest cannot be read or authenticated. */
  damaged: number
  /** The newest passed drill of any of its backups, per component it covered. */
  lastPassedDrill: null | {backupId: string; components: Array<'database' | 'media'>; endedAt: string}
  /** Set only when a maximum age was given: whether the newest complete backup is older, or missing. */
  late?: boolean
  newest: NewestBackup | null
}

export function freshnessOf(
  catalog: Catalog,
  now: Date,
  maxAgeSeconds?: number,
  drills: ReadonlyMap<string, {endedAt: string; passed: boolean}> = new Map(),
): Freshness {
  const [newest] = catalog.complete
  const seconds = (from: string, to: Date | string) => (new Date(to).getTime() - new Date(from).getTime()) / 1000
  const components: Freshness['components'] = {}
  for (const name of ['database', 'media'] as const) {
    const holder = catalog.complete.find(({manifest}) => manifest.components[name] !== undefined)
    if (holder === undefined) continue
    const {manifest} = holder
    const {database, media} = manifest.components
    components[name] = {
      // The size of what it holds, as list shows it: the dump, or the media files.
      bytes: name === 'database' ? database!.plaintext.bytes : mediaView(media!).bytes,
      completedAt: manifest.completedAt,
      durationSeconds: seconds(manifest.createdAt, manifest.completedAt),
      id: manifest.id,
    }
  }

  const newestBackup =
    newest === undefined
      ? null
      : {
          ageSeconds: Math.max(0, seconds(newest.manifest.completedAt, now)),
          completedAt: newest.manifest.completedAt,
          createdAt: newest.manifest.createdAt,
          durationSeconds: seconds(newest.manifest.createdAt, newest.manifest.completedAt),
          id: newest.manifest.id,
        }
  const passed = catalog.complete
    .flatMap(({manifest}) => {
      const drill = drills.get(manifest.id)
      return drill?.passed ? [{drill, manifest}] : []
    })
    .sort((a, b) => b.drill.endedAt.localeCompare(a.drill.endedAt))[0]
  return {
    components,
    damaged: catalog.damaged.length,
    lastPassedDrill: passed
      ? {
          backupId: passed.manifest.id,
          components: (['database', 'media'] as const).filter((name) => passed.manifest.components[name] !== undefined),
          endedAt: passed.drill.endedAt,
        }
      : null,
    ...(maxAgeSeconds === undefined ? {} : {late: newestBackup === null || newestBackup.ageSeconds > maxAgeSeconds}),
    newest: newestBackup,
  }
}
