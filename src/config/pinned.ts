import {defaultSettings, ResolvedEnvironment} from './load.js'

/**
 * The config `init` writes: what was asked for, then every source and key as it resolved here. A
 * variable stays a reference (`${DATABASE_URL}`: the value may hold a password, and an unset one fails
 * the tick by name); recipients and writer ids are public, and are written as they are. A media format
 * chosen by DIVIO_BACKUP_MEDIA_FORMAT is written as a setting: the tick that cron starts has no such
 * variable.
 */
export function pinnedConfig(
  asked: Record<string, unknown>,
  environment: Pick<ResolvedEnvironment, 'mediaFormat' | 'name'>,
  resolved: {
    defaults: Awaited<ReturnType<typeof defaultSettings>>
    recipients: string[]
    variables: NodeJS.ProcessEnv
    writers: string[]
  },
): Record<string, unknown> {
  const {defaults} = resolved
  const {name} = environment
  const environments = (asked.environments ?? {}) as Record<string, Record<string, unknown>>
  const {schedule, ...settings} = environments[name] ?? {}
  return {
    app: asked.app ?? defaults.app,
    defaultEnvironment: name,
    environments: {
      [name]: {
        ...(defaults.database === undefined ? {} : {database: defaults.database}),
        ...(defaults.media === undefined ? {} : {media: defaults.media}),
        store: defaults.store,
        ...settings,
        ...(resolved.variables.DIVIO_BACKUP_MEDIA_FORMAT ? {mediaFormat: environment.mediaFormat} : {}),
        ...(schedule === undefined ? {} : {schedule}),
        encryption: {recipients: resolved.recipients, writers: resolved.writers},
      },
    },
  }
}
