import {existsSync, readFileSync, statSync} from 'node:fs'
import {basename, dirname, join, resolve} from 'node:path'

import {BackupError} from '../errors.js'
import {DatabaseSource, MediaSource, parseDatabaseDsn, parseMediaDsn, parseStoreLocation, StoreLocation} from './dsn.js'
import {ConfigFile, configSchema, RetentionPolicy} from './schema.js'

export const CONFIG_RELATIVE_PATH = join('.divio', 'backups.json')
export const EMBEDDED_ENVIRONMENT = 'local'

/** Everything a command needs to know about one environment, with defaults applied and paths resolved. */
export interface ResolvedEnvironment {
  app: string
  /** Where the settings came from: a config file path, or `embedded default`. */
  configSource: string
  database?: DatabaseSource
  /** The environment names the config defines, for messages. */
  knownEnvironments: string[]
  media?: MediaSource
  /** `tar` unless the config or DIVIO_BACKUP_MEDIA_FORMAT asks for `packs`. */
  mediaFormat: 'packs' | 'tar'
  name: string
  /** Explicit recipients from the config; undefined means "use the key ring's defaults". */
  recipients?: string[]
  retention: RetentionPolicy
  schedule?: {at: string; timezone: string}
  store: StoreLocation
  /** Trusted writer ids from the config; undefined means "use the key ring's defaults". */
  writers?: string[]
}

export interface LoadOptions {
  /** `--config`: a file to use instead of discovery. */
  configPath?: string
  cwd: string
  /** `-e/--env`. */
  environment?: string
  variables: NodeJS.ProcessEnv
}

/** Walks up from `cwd` to the nearest `.divio/backups.json`. */
export function findConfigFile(cwd: string): string | undefined {
  let folder = resolve(cwd)
  for (;;) {
    const candidate = join(folder, CONFIG_RELATIVE_PATH)
    if (existsSync(candidate)) return candidate
    const parent = dirname(folder)
    if (parent === folder) return undefined
    folder = parent
  }
}

export function loadEnvironment(options: LoadOptions): ResolvedEnvironment {
  const configPath = options.configPath ? resolve(options.cwd, options.configPath) : findConfigFile(options.cwd)
  if (configPath === undefined) return embeddedDefault(options)
  return fromFile(configPath, options)
}

function fromFile(configPath: string, options: LoadOptions): ResolvedEnvironment {
  let text: string
  try {
    text = readFileSync(configPath, 'utf8')
  } catch {
    throw new BackupError('CONFIG_NOT_FOUND', `Cannot read the config file ${configPath}.`, {
      suggestion: 'Check the --config path, or run without --config to use .divio/backups.json.',
    })
  }

  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    throw new BackupError('CONFIG_INVALID', `${configPath} is not valid JSON: ${(error as Error).message}.`, {
      suggestion: 'Fix the JSON syntax (a trailing comma or a missing quote is the usual cause).',
    })
  }

  const parsed = configSchema.safeParse(interpolateSelected(raw, options, configPath))
  if (!parsed.success) {
    const [issue] = parsed.error.issues
    const path = formatPath(issue.path)
    throw new BackupError('CONFIG_INVALID', `Invalid config ${configPath} at ${path}: ${issue.message}.`, {
      suggestion: `Fix the value at ${path}; README "Configuration" lists every setting.`,
    })
  }

  // The project root is the folder that holds .divio/; relative paths in the file are relative to it.
  const folder = dirname(configPath)
  const root = basename(folder) === '.divio' ? dirname(folder) : folder
  return resolveEnvironment(parsed.data, root, configPath, options.environment)
}

function resolveEnvironment(
  config: ConfigFile,
  root: string,
  configSource: string,
  requested: string | undefined,
): ResolvedEnvironment {
  const names = Object.keys(config.environments)
  const name = requested ?? config.defaultEnvironment ?? (names.length === 1 ? names[0] : undefined)
  if (name === undefined) {
    throw new BackupError('USAGE', `No environment given, and ${configSource} defines several: ${names.join(', ')}.`, {
      suggestion: `Pass -e/--env (one of ${names.join(', ')}), or set "defaultEnvironment" in the config.`,
    })
  }

  const settings = config.environments[name]
  if (settings === undefined) throw unknownEnvironment(name, names)
  const where = (key: string) => `environments.${name}.${key}`
  return {
    app: config.app,
    configSource,
    database: settings.database ? parseDatabaseDsn(settings.database, root, where('database')) : undefined,
    knownEnvironments: names,
    media: settings.media ? parseMediaDsn(settings.media, root, where('media')) : undefined,
    mediaFormat: settings.mediaFormat ?? 'tar',
    name,
    recipients: settings.encryption?.recipients,
    retention: settings.retention,
    schedule: settings.schedule ? {at: settings.schedule.at, timezone: settings.schedule.timezone} : undefined,
    store: parseStoreLocation(settings.store, root, where('store')),
    writers: settings.encryption?.writers,
  }
}

export function unknownEnvironment(name: string, known: readonly string[]): BackupError {
  return new BackupError('ENV_UNKNOWN', `Unknown environment "${name}".`, {
    suggestion: `Use one of: ${known.join(', ')}.`,
  })
}

/**
 * With no config file: env `local`, database from DATABASE_URL or ./db.sqlite3, media from MEDIA_ROOT, the
 * platform's DEFAULT_STORAGE_DSN or ./media, store from DIVIO_BACKUP_STORE or ./.divio/backups. The app is named after the project folder so
 * that two projects sharing one store never see (or prune) each other's backups.
 */
function embeddedDefault(options: LoadOptions): ResolvedEnvironment {
  const root = resolve(options.cwd)
  const {variables} = options
  const sqlitePath = join(root, 'db.sqlite3')
  const mediaPath = join(root, 'media')
  const database = variables.DATABASE_URL || (isFile(sqlitePath) ? 'sqlite:///db.sqlite3' : undefined)
  const media = variables.MEDIA_ROOT || variables.DEFAULT_STORAGE_DSN || (isFolder(mediaPath) ? mediaPath : undefined)
  const store = variables.DIVIO_BACKUP_STORE || join(root, '.divio', 'backups')
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

  const app =
    basename(root)
      .replaceAll(/[^a-z0-9_-]+/gi, '-')
      .replace(/^[-_]+/, '')
      .slice(0, 63) || 'app'
  const config = configSchema.parse({
    app,
    environments: {[EMBEDDED_ENVIRONMENT]: {database, media, mediaFormat, store}},
  })
  if (options.environment !== undefined && options.environment !== EMBEDDED_ENVIRONMENT) {
    throw new BackupError('ENV_UNKNOWN', `Unknown environment "${options.environment}".`, {
      suggestion: `No ${CONFIG_RELATIVE_PATH} was found, so the only environment is "${EMBEDDED_ENVIRONMENT}". Create the config file to define others.`,
    })
  }

  return resolveEnvironment(config, root, 'embedded default', EMBEDDED_ENVIRONMENT)
}

/**
 * Interpolates the top-level settings and the selected environment only: acting on `test` must not
 * require the variables that only `live` uses.
 */
function interpolateSelected(raw: unknown, options: LoadOptions, file: string): unknown {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw
  const {environments, ...top} = raw as Record<string, unknown>
  const settings = interpolate(top, options.variables, [], file) as Record<string, unknown>
  if (environments === null || typeof environments !== 'object' || Array.isArray(environments)) {
    return {...settings, environments}
  }

  const names = Object.keys(environments)
  const selected =
    options.environment ??
    (typeof settings.defaultEnvironment === 'string' ? settings.defaultEnvironment : undefined) ??
    (names.length === 1 ? names[0] : undefined)
  return {
    ...settings,
    environments: Object.fromEntries(
      Object.entries(environments).map(([name, value]) => [
        name,
        name === selected ? interpolate(value, options.variables, ['environments', name], file) : value,
      ]),
    ),
  }
}

/** Replaces `${VAR}` in every string of the config; an unset variable names the JSON path that needs it. */
function interpolate(value: unknown, variables: NodeJS.ProcessEnv, path: (number | string)[], file: string): unknown {
  if (typeof value === 'string') {
    return value.replaceAll(/\$\{([A-Za-z_]\w*)\}/g, (_match, variable: string) => {
      const replacement = variables[variable]
      if (replacement === undefined || replacement === '') {
        throw new BackupError(
          'CONFIG_VARIABLE_UNSET',
          `${file} at ${formatPath(path)} uses \${${variable}}, which is not set.`,
          {suggestion: `Set the environment variable ${variable}, or change the config.`},
        )
      }

      return replacement
    })
  }

  if (Array.isArray(value)) return value.map((item, index) => interpolate(item, variables, [...path, index], file))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, interpolate(item, variables, [...path, key], file)]),
    )
  }

  return value
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(top level)'
  return path
    .map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`))
    .join('')
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile()
  } catch {
    return false
  }
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

export {redactDsn} from './dsn.js'
