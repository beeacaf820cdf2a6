import {EMBEDDED_CONFIG, ResolvedEnvironment} from '../config/load.js'
import {BackupError} from '../errors.js'
import {catalogOf} from './catalog.js'
import {BackupContext} from './context.js'

type Part = 'database' | 'media'

/** Where a part's zero-config default comes from, for the message that says none was found. */
const DEFAULT_SOURCES: Record<Part, {file: string; set: string; unset: string}> = {
  database: {file: 'db.sqlite3', set: 'DATABASE_URL is', unset: 'DATABASE_URL is'},
  media: {
    file: 'media folder',
    set: 'MEDIA_ROOT or DEFAULT_STORAGE_DSN is',
    unset: 'MEDIA_ROOT and DEFAULT_STORAGE_DSN are',
  },
}

/**
 * Refuses a backup that would leave out a part that the environment's backups hold, where the
 * config does not say the part is gone (`"database": "none"`) and the command did not ask to leave it
 * out (--media-only, --db-only). A default that is not found here is most often a variable that this
 * process lacks (cron and systemd start without the shell's), and a backup without the database then
 * completed, as fresh as any to `status`, holding the media alone. Only an authenticated backup is
 * compared with: a manifest anyone could plant decides nothing here either.
 */
export async function refuseMissingPart(context: BackupContext, wanted: Record<Part, boolean>): Promise<void> {
  const {env} = context
  const missing = (['database', 'media'] as const).filter((part) => wanted[part] && env.absent[part] === 'not found')
  if (missing.length === 0) return
  const {complete} = await catalogOf(context)
  for (const part of missing) {
    // Newest first. One backup that left the part out (--media-only) says nothing of the next.
    const holding = complete.find((backup) => backup.manifest.components[part] !== undefined)
    if (holding !== undefined) throw partMissing(env, part, holding.manifest.id)
  }
}

function partMissing(env: ResolvedEnvironment, part: Part, newestHolding: string): BackupError {
  const onlyTheOther = part === 'database' ? '--media-only' : '--db-only'
  return new BackupError(
    'SOURCE_UNAVAILABLE',
    `Backups of ${env.app}/${env.name} hold the ${part} (the newest: ${newestHolding}), but this run finds none: ${whyNone(env, part)}. Nothing was backed up.`,
    {
      suggestion: `Run it where ${DEFAULT_SOURCES[part].set} set as for the earlier backups (cron and systemd do not pass on a shell's variables), or set "${part}" for ${env.name} in ${configFile(env)}. If ${env.name} has no ${part} any more, say so with "${part}": "none" there, or pass ${onlyTheOther}.`,
    },
  )
}

function whyNone(env: ResolvedEnvironment, part: Part): string {
  const {file, unset} = DEFAULT_SOURCES[part]
  const config =
    env.configSource === EMBEDDED_CONFIG ? 'there is no config file' : `${env.configSource} sets no "${part}"`
  return `${config}, ${unset} not set, and there is no ${file} in ${env.root}`
}

function configFile(env: ResolvedEnvironment): string {
  return env.configSource === EMBEDDED_CONFIG
    ? '.divio/backups.json (`divio app backup init` writes one)'
    : env.configSource
}
