import {lstat, readFile, stat} from 'node:fs/promises'
import {homedir} from 'node:os'
import {basename, dirname, join, resolve} from 'node:path'

import {BackupError} from '../errors.js'
import {resolvesInside} from '../lib/paths.js'
import {HookSettings} from '../proof/hooks.js'
import {DatabaseSource, MediaSource, parseDatabaseDsn, parseMediaDsn, parseStoreLocation, StoreLocation} from './dsn.js'
import {formatPath, interpolateSelected, UnsetVariables} from './interpolate.js'
import {S3Location} from './s3-location.js'
import {ConfigFile, configSchema, environmentSchema, RetentionPolicy} from './schema.js'

export const CONFIG_RELATIVE_PATH = join('.divio', 'backups.json')
export const EMBEDDED_ENVIRONMENT = 'local'
export const EMBEDDED_CONFIG = 'embedded default'

/** Everything a command needs to know about one environment, with defaults applied and paths resolved. */
export interface ResolvedEnvironment {
  /**
   * Where the database or the media is undefined, why: `none`, the config says so; `not found`, it
   * names none and no default was found here (a variable unset, no db.sqlite3 or media folder);
   * `unset`, it names a variable that is not set here (see `unsetVariables`).
   */
  absent: {database?: 'none' | 'not found' | 'unset'; media?: 'none' | 'not found' | 'unset'}
  app: string
  /** Where the settings came from: a config file path, or `embedded default`. */
  configSource: string
  /** Record row counts and a schema hash with each database backup (config `countRows`, default true). */
  countRows: boolean
  database?: DatabaseSource
  /** `drill`'s query of the restored database (config `drill`). */
  drill?: {every?: 'daily' | 'weekly'; expect?: string; query?: string}
  /** The environment names the config defines, for messages. */
  knownEnvironments: string[]
  media?: MediaSource
  /** `tar` unless the config or DIVIO_BACKUP_MEDIA_FORMAT asks for `packs`. */
  mediaFormat: 'packs' | 'tar'
  name: string
  /** Notification hooks (config `notify`). */
  notify?: HookSettings
  /** Explicit recipients from the config; undefined means "use the key ring's defaults". */
  recipients?: string[]
  retention: RetentionPolicy
  /** The app's folder: the one that holds `.divio/`, or the working folder without a config file. */
  root: string
  schedule?: {at: string; timezone: string}
  store: StoreLocation
  /**
   * The error of a `database` or `media` setting that names a variable not set here, raised by what
   * needs that part (requireParts): listing, verifying or pruning backups needs neither, and a host
   * that watches the store need not hold the app's DATABASE_URL.
   */
  unsetVariables: UnsetVariables
  /** Trusted writer ids from the config; undefined means "use the key ring's defaults". */
  writers?: string[]
}

/** Fails with the error of the parts asked for whose setting names a variable that is not set here. */
export function requireParts(env: ResolvedEnvironment, parts: {database?: boolean; media?: boolean}): void {
  const unset =
    (parts.database ? env.unsetVariables.database : undefined) ?? (parts.media ? env.unsetVariables.media : undefined)
  if (unset !== undefined) throw unset
}

export interface LoadOptions {
  /** `--config`: a file to use instead of discovery. */
  configPath?: string
  cwd: string
  /** `-e/--env`. */
  environment?: string
  variables: NodeJS.ProcessEnv
}

/*
 * Every file system call here is asynchronous, never on the calling thread: a media folder or a store
 * on a mount that hangs (stat'ed for the defaults, followed through links for the store check) would
 * otherwise hold the main thread, where SIGINT and SIGTERM are handled, before the command begins.
 */

/** Walks up from `cwd` to the nearest `.divio/backups.json`. */
export async function findConfigFile(cwd: string): Promise<string | undefined> {
  let folder = resolve(cwd)
  for (;;) {
    const candidate = join(folder, CONFIG_RELATIVE_PATH)
    if (await exists(candidate)) return candidate
    const parent = dirname(folder)
    if (parent === folder) return undefined
    folder = parent
  }
}

export async function loadEnvironment(options: LoadOptions): Promise<ResolvedEnvironment> {
  const configPath = options.configPath ? resolve(options.cwd, options.configPath) : await findConfigFile(options.cwd)
  if (configPath === undefined) return embeddedDefault(options)
  return fromFile(configPath, options)
}

async function fromFile(configPath: string, options: LoadOptions): Promise<ResolvedEnvironment> {
  const {config, unsetVariables} = interpolateSelected(await readConfigJson(configPath), options, configPath)
  return environmentFromConfig(config, configPath, {...options, unsetVariables})
}

/**
 * The names of the environments that `options` would choose from (`status` reports each), without
 * resolving any: one that needs a variable that is not set here must not hide the others.
 */
export async function environmentNames(options: Omit<LoadOptions, 'environment'>): Promise<string[]> {
  const configPath = options.configPath ? resolve(options.cwd, options.configPath) : await findConfigFile(options.cwd)
  if (configPath === undefined) return [EMBEDDED_ENVIRONMENT]
  const raw = (await readConfigJson(configPath)) as null | {environments?: unknown}
  const environments = raw?.environments
  return environments !== null && typeof environments === 'object' && !Array.isArray(environments)
    ? Object.keys(environments)
    : [EMBEDDED_ENVIRONMENT]
}

async function readConfigJson(configPath: string): Promise<unknown> {
  let text: string
  try {
    text = await readFile(configPath, 'utf8')
  } catch (error) {
    const {code} = error as NodeJS.ErrnoException
    const why = code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : 'it does not exist'
    throw new BackupError('CONFIG_NOT_FOUND', `Cannot read the config file ${configPath}: ${why}.`, {
      suggestion:
        code === 'EACCES'
          ? `Let this user read it (ls -l '${configPath}'), or run as the user that owns it.`
          : 'Check the --config path, or run without --config to use .divio/backups.json.',
    })
  }

  // Editors on Windows start UTF-8 files with a byte order mark, which JSON.parse refuses.
  const json = text.startsWith('\uFEFF') ? text.slice(1) : text
  try {
    return JSON.parse(json)
  } catch (error) {
    throw new BackupError(
      'CONFIG_INVALID',
      `${configPath} is not valid JSON: ${withLine((error as Error).message, json)}.`,
      {
        suggestion: 'Fix the JSON syntax (a trailing comma or a missing quote is the usual cause).',
      },
    )
  }
}

/** JSON.parse's message with the line and column of its position, which Node.js 20 gives only as an offset. */
function withLine(message: string, text: string): string {
  const position = /at position (\d+)$/.exec(message)
  if (position === null) return message
  const before = text.slice(0, Number(position[1])).split('\n')
  return `${message} (line ${before.length} column ${before.at(-1)!.length + 1})`
}

/**
 * One environment of a config (parsed JSON, interpolated) that is, or is about to be, at `configPath`:
 * `init` checks a config this way before it writes it.
 */
export async function environmentFromConfig(
  raw: unknown,
  configPath: string,
  options: Partial<Pick<Resolution, 'unsetVariables'>> & Pick<LoadOptions, 'environment' | 'variables'>,
): Promise<ResolvedEnvironment> {
  const parsed = configSchema.safeParse(raw)
  if (!parsed.success) {
    const [issue] = parsed.error.issues
    const path = formatPath(issue.path)
    throw new BackupError('CONFIG_INVALID', `Invalid config ${configPath} at ${path}: ${issue.message}.`, {
      suggestion: `Fix the value at ${path}; docs/configuration.md lists every setting.`,
    })
  }

  // The project root is the folder that holds .divio/; relative paths in the file are relative to it.
  const folder = dirname(configPath)
  const root = basename(folder) === '.divio' ? dirname(folder) : folder
  return resolveEnvironment(parsed.data, {
    configSource: configPath,
    requested: options.environment,
    root,
    unsetVariables: options.unsetVariables ?? {},
    variables: options.variables,
  })
}

interface Resolution {
  /** A config file's path, or `embedded default`. */
  configSource: string
  /** `-e/--env`. */
  requested: string | undefined
  /** The app folder: relative paths are relative to it, and the defaults are found in it. */
  root: string
  /** The selected environment's `database` or `media` that names a variable not set here. */
  unsetVariables: ResolvedEnvironment['unsetVariables']
  variables: NodeJS.ProcessEnv
}

/** One environment of `config`, with every field the config leaves out set to its zero-config default. */
async function resolveEnvironment(
  config: ConfigFile,
  {configSource, requested, root, unsetVariables, variables}: Resolution,
): Promise<ResolvedEnvironment> {
  const environments = config.environments ?? {[EMBEDDED_ENVIRONMENT]: environmentSchema.parse({})}
  const names = Object.keys(environments)
  const name = requested ?? config.defaultEnvironment ?? (names.length === 1 ? names[0] : undefined)
  if (name === undefined) {
    throw new BackupError('USAGE', `No environment given, and ${configSource} defines several: ${names.join(', ')}.`, {
      suggestion: `Pass -e/--env (one of ${names.join(', ')}), or set "defaultEnvironment" in the config.`,
    })
  }

  const settings = environments[name]
  if (settings === undefined) throw unknownEnvironment(name, names, configSource)
  const where = (key: string) => `environments.${name}.${key}`
  const defaults = await zeroConfigDefaults(root, variables)
  const database = chosenSource(settings.database, defaults.database, unsetVariables.database)
  const mediaDsn = chosenSource(settings.media, defaults.media, unsetVariables.media)
  const media = mediaDsn.value ? parseMediaDsn(mediaDsn.value, root, where('media'), settings.archivedMedia) : undefined
  const store = parseStoreLocation(settings.store ?? defaults.store, root, where('store'))
  await refuseStoreInsideMedia(store, media)
  return {
    absent: {database: database.absent, media: mediaDsn.absent},
    app: config.app ?? defaults.app,
    configSource,
    countRows: settings.countRows ?? true,
    database: database.value ? parseDatabaseDsn(database.value, root, where('database')) : undefined,
    drill: settings.drill,
    knownEnvironments: names,
    media,
    mediaFormat: settings.mediaFormat ?? defaults.mediaFormat ?? 'tar',
    name,
    notify: settings.notify,
    recipients: settings.encryption?.recipients,
    retention: settings.retention,
    root,
    schedule: settings.schedule ? {at: settings.schedule.at, timezone: settings.schedule.timezone} : undefined,
    store,
    unsetVariables,
    writers: settings.encryption?.writers,
  }
}

/** The value of `database` or `media` that says an environment has none. */
export const NONE = 'none'

/**
 * The database's or the media's DSN: the config's, else the default found here. "none" says the
 * environment has none on purpose, and a setting whose variable is unset is no setting to fall back
 * from: in neither case is a default found here taken.
 */
function chosenSource(
  setting: string | undefined,
  fallback: string | undefined,
  unset: BackupError | undefined,
): {absent?: ResolvedEnvironment['absent']['database']; value?: string} {
  if (unset !== undefined) return {absent: 'unset'}
  if (setting === NONE) return {absent: 'none'}
  const value = setting ?? fallback
  return value ? {value} : {absent: 'not found'}
}

/**
 * What a setting is when nobody set it: the app is named after its folder (so that two apps sharing
 * one store never see, or prune, each other's backups); the database is DATABASE_URL, else
 * ./db.sqlite3 if it exists or is a link; media is MEDIA_ROOT, else the platform's DEFAULT_STORAGE_DSN,
 * else ./media if it exists or is a link; the store is DIVIO_BACKUP_STORE, else ./.divio/backups.
 */
async function zeroConfigDefaults(root: string, variables: NodeJS.ProcessEnv) {
  const mediaFormat = variables.DIVIO_BACKUP_MEDIA_FORMAT || undefined
  if (mediaFormat !== undefined && mediaFormat !== 'tar' && mediaFormat !== 'packs') {
    throw new BackupError(
      'CONFIG_INVALID',
      `DIVIO_BACKUP_MEDIA_FORMAT is "${mediaFormat}", which is no media format.`,
      {
        suggestion: 'Set it to "packs" (incremental) or "tar" (one archive a backup), or unset it.',
      },
    )
  }

  const settings = await defaultSettings(root, variables)
  // A setting that names a variable takes its value as it is: a DSN may itself hold "${".
  const valueOf = (setting: string | undefined) => {
    const variable = setting === undefined ? undefined : /^\$\{(\w+)\}$/.exec(setting)?.[1]
    return variable === undefined ? setting : variables[variable]
  }

  return {
    app: settings.app,
    database: valueOf(settings.database),
    media: valueOf(settings.media),
    mediaFormat: mediaFormat as 'packs' | 'tar' | undefined,
    store: valueOf(settings.store)!,
  }
}

/**
 * The zero-config defaults as a config file writes them: a variable by reference (its value may hold a
 * password, and it is read where the command runs), a file by its path in the app folder. `init` writes
 * them into the config it makes, so that a tick run by cron or systemd, which start without the
 * shell's variables, backs up what `init` saw, or fails saying which variable it lacks.
 */
export async function defaultSettings(
  root: string,
  variables: NodeJS.ProcessEnv,
): Promise<{app: string; database?: string; media?: string; store: string}> {
  const sqlitePath = join(root, 'db.sqlite3')
  const mediaPath = join(root, 'media')
  const variable = (name: string) => (variables[name] ? `\${${name}}` : undefined)
  return {
    app:
      basename(root)
        .replaceAll(/[^a-z0-9_-]+/gi, '-')
        .replace(/^[-_]+/, '')
        .slice(0, 63) || 'app',
    // A link counts even where it leads to nothing yet: a volume a new machine restores onto.
    database:
      variable('DATABASE_URL') ??
      ((await isFile(sqlitePath)) || (await isLink(sqlitePath)) ? 'sqlite:///db.sqlite3' : undefined),
    media:
      variable('MEDIA_ROOT') ??
      variable('DEFAULT_STORAGE_DSN') ??
      ((await isFolder(mediaPath)) || (await isLink(mediaPath)) ? 'media' : undefined),
    store: variable('DIVIO_BACKUP_STORE') ?? join('.divio', 'backups'),
  }
}

/**
 * A store inside the media folder would be backed up into itself (each backup holding the ones before
 * it), and a restore of the media would replace the store it reads from. On S3 "inside" is the same
 * service and bucket, under the media's prefix.
 */
async function refuseStoreInsideMedia(store: StoreLocation, media: MediaSource | undefined): Promise<void> {
  if (store.kind === 'local' && media?.kind === 'filesystem' && (await resolvesInside(store.path, media.path))) {
    throw storeInsideMedia(store.path, media.path, 'folder')
  }

  if (store.kind === 's3' && media?.kind === 's3' && s3Contains(media.location, store.location)) {
    const url = (location: S3Location) => `s3://${location.bucket}/${location.prefix}`
    throw storeInsideMedia(url(store.location), url(media.location), 'bucket')
  }
}

function s3Contains(outer: S3Location, inner: S3Location): boolean {
  return (
    outer.bucket === inner.bucket &&
    (outer.endpoint ?? '') === (inner.endpoint ?? '') &&
    inner.prefix.startsWith(outer.prefix)
  )
}

function storeInsideMedia(store: string, media: string, kind: 'bucket' | 'folder'): BackupError {
  return new BackupError('CONFIG_INVALID', `The store ${store} is inside the media ${kind} ${media}.`, {
    suggestion: `Move the store out of the media ${kind} (its backups stay valid where they are moved) and point DIVIO_BACKUP_STORE, or "store" in the config, at its new place.`,
  })
}

export function unknownEnvironment(name: string, known: readonly string[], configSource?: string): BackupError {
  if (configSource === EMBEDDED_CONFIG) {
    return new BackupError('ENV_UNKNOWN', `Unknown environment "${name}".`, {
      suggestion: `No ${CONFIG_RELATIVE_PATH} was found, so the only environment is "${EMBEDDED_ENVIRONMENT}". Run \`divio app backup init\` to define others.`,
    })
  }

  return new BackupError('ENV_UNKNOWN', `Unknown environment "${name}".`, {
    suggestion: `Use one of: ${known.join(', ')}.`,
  })
}

/** With no config file: the zero-config defaults, in the app folder found from the working folder. */
async function embeddedDefault(options: LoadOptions): Promise<ResolvedEnvironment> {
  return resolveEnvironment(
    {},
    {
      configSource: EMBEDDED_CONFIG,
      requested: options.environment,
      root: await findAppFolder(options.cwd),
      unsetVariables: {},
      variables: options.variables,
    },
  )
}

/**
 * The app folder of a working folder with no config file above it: the nearest folder, from there up,
 * that holds the default store (`.divio/backups/`) or Django's `manage.py`, as git finds its
 * repository; else the working folder. Run from `media/`, a command acts on the app, not on a new one
 * named "media". (Not any `.divio/`: other tools keep one in the home folder.) The search stops below
 * the home folder, as git's ceiling does: a store kept in `~/.divio/backups` must not turn every
 * project under the home folder into one app.
 */
export async function findAppFolder(cwd: string, home = homedir()): Promise<string> {
  const start = resolve(cwd)
  const ceiling = resolve(home)
  for (let folder = start; ; folder = dirname(folder)) {
    if (folder === ceiling && folder !== start) return start
    if ((await isFolder(join(folder, '.divio', 'backups'))) || (await isFile(join(folder, 'manage.py')))) return folder
    if (dirname(folder) === folder) return start
  }
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => {}))?.isFile() ?? false
}

async function isFolder(path: string): Promise<boolean> {
  return (await stat(path).catch(() => {}))?.isDirectory() ?? false
}

async function isLink(path: string): Promise<boolean> {
  return (await lstat(path).catch(() => {}))?.isSymbolicLink() ?? false
}

async function exists(path: string): Promise<boolean> {
  return (await stat(path).catch(() => {})) !== undefined
}

export {redactDsn} from './dsn.js'
