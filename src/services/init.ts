import {writeFile} from 'node:fs/promises'
import {userInfo} from 'node:os'
import {isAbsolute, join} from 'node:path'

import {
  CONFIG_RELATIVE_PATH,
  defaultSettings,
  environmentFromConfig,
  findAppFolder,
  findConfigFile,
  ResolvedEnvironment,
} from '../config/load.js'
import {pinnedConfig} from '../config/pinned.js'
import {BackupError} from '../errors.js'
import {makeFolders} from '../lib/folders.js'
import {shellQuote} from '../lib/shell.js'
import {openStore} from '../store/index.js'
import {ServiceSetup} from './context.js'
import {identityCreatedNotice, writerKeyCreatedNotice} from './keys.js'
import {putSmallObject} from './objects.js'
import {isEmptyStore, newStoreNotice, refuseNewIdentity, storeCall, StoreSetupContext} from './store-setup.js'

/** What `init` was asked for; anything left out is written as its zero-config default resolves here. */
export interface InitOptions {
  app?: string
  environment?: string
  /** Replace an existing config file. */
  force: boolean
  schedule?: {at: string; timezone?: string}
  store?: string
}

export interface InitResult {
  /** The config file as written: what was asked for, and what the rest resolved to here. */
  config: Record<string, unknown>
  configPath: string
  /** The lines to install, for the schedule (or for an hourly tick, once a schedule is set). */
  cron: string
  environment: {app: string; name: string; store: string}
  keys: {
    identityFile: string
    identityGenerated: boolean
    recipient: string[]
    writerId: string
    writerKeyGenerated: boolean
  }
  storeCreated: boolean
  systemd: {service: string; timer: string}
  /** The variables the tick reads (the config's, and the AWS chain's for a bucket), which its environment must set too. */
  variables: string[]
}

/**
 * Sets an app up in one step: a config, a store that is checked (and made, saying so), and keys (made
 * if there are none, refused if the store already holds backups that a lost key encrypted). The config
 * holds what was asked for and what everything else resolved to here: the database, the media, the
 * store (a variable by reference), the recipients and the trusted writers. A scheduled tick runs under
 * cron or systemd, without this shell's variables and maybe as another user, and a default resolved
 * there instead would back up less than this (no DATABASE_URL: no database) or encrypt to a key made
 * for that user. The config is written last, so that a failed check leaves no config behind; a store
 * folder it made stays, holding only its marker, and the next init or create uses it.
 */
export async function initApp(setup: ServiceSetup, options: InitOptions): Promise<InitResult> {
  const existing = await findConfigFile(setup.cwd)
  const root = existing === undefined ? await findAppFolder(setup.cwd) : join(existing, '..', '..')
  const configPath = existing ?? join(root, CONFIG_RELATIVE_PATH)
  if (existing !== undefined && !options.force) {
    throw new BackupError('OUTPUT_EXISTS', `${existing} already exists; nothing was changed.`, {
      suggestion: 'Edit it, or run init again with --force to replace it.',
    })
  }

  const asked = minimalConfig(options)
  const env = await inTermsOfFlags(() => environmentFromConfig(asked, configPath, {variables: setup.variables}))
  const context = {...setup, env, keys: setup.keys(env), store: openStore(env.store, env.root, setup)}

  const storeCreated = await prepareStore(context)
  let identityGenerated = false
  const recipients = await context.keys.recipients(
    context.now(),
    (path, recipient) => {
      identityGenerated = true
      context.reporter.notice(identityCreatedNotice(path, recipient))
    },
    async () => {
      if (!storeCreated) await refuseNewIdentity(context)
    },
  )
  let writerKeyGenerated = false
  const writer = await context.keys.writerKey(context.now(), (path, writerId) => {
    writerKeyGenerated = true
    context.reporter.notice(writerKeyCreatedNotice(path, writerId))
  })
  const config = pinnedConfig(asked, env, {
    defaults: await defaultSettings(root, setup.variables),
    recipients: recipients.names,
    variables: setup.variables,
    writers: [...(await context.keys.trustedWriters())],
  })

  await makeFolders(join(configPath, '..'))
  await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`, {flag: options.force ? 'w' : 'wx'})
  return {
    config,
    configPath,
    ...scheduleLines(root, env.name, {path: setup.variables.PATH, user: currentUser()}),
    environment: {app: env.app, name: env.name, store: context.store.description},
    keys: {
      identityFile: context.keys.identityPath,
      identityGenerated,
      recipient: recipients.names,
      writerId: writer.id,
      writerKeyGenerated,
    },
    storeCreated,
    variables: [
      ...[...JSON.stringify(config).matchAll(/\$\{(\w+)\}/g)].map((match) => match[1]),
      ...awsVariablesUsed(env, setup.variables),
    ],
  }
}

/**
 * The config that init writes is checked as any config is, but what the user typed were flags: an
 * error at `environments.live.schedule.at` is about --schedule, and names it, not a file that does not
 * exist yet.
 */
async function inTermsOfFlags<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check()
  } catch (error) {
    if (!(error instanceof BackupError) || error.code !== 'CONFIG_INVALID') throw error
    const flag = FLAG_OF_SETTING.find(([pattern]) => pattern.test(error.message))?.[1]
    if (flag === undefined) throw error
    const reason = error.message.replace(/^.*? at [\w.[\]-]+: /, '').replace(/^[\w.[\]-]+: /, '')
    const specific = error.suggestion?.startsWith('Fix the value at') ? undefined : error.suggestion
    throw new BackupError('USAGE', `${flag}: ${reason} Nothing was written.`, {
      suggestion: specific ?? `Run init again with another ${flag}.`,
    })
  }
}

/** Which init flag sets which config setting, by the path a config error names. */
const FLAG_OF_SETTING: ReadonlyArray<readonly [RegExp, string]> = [
  [/\.schedule\.timezone\b/, '--timezone'],
  [/\.schedule\b/, '--schedule'],
  [/\.store\b/, '--store'],
  [/(?:^|[ .])app\b/, '--app'],
  [/\benvironments\b|defaultEnvironment/, '--env'],
]

/** The config file for `options`: what was asked for and nothing else. */
function minimalConfig(options: InitOptions): Record<string, unknown> {
  const environment: Record<string, unknown> = {}
  if (options.store !== undefined) environment.store = options.store
  if (options.schedule !== undefined) environment.schedule = {timezone: 'UTC', ...options.schedule}
  const name = options.environment ?? 'local'
  return {
    ...(options.app === undefined ? {} : {app: options.app}),
    ...(options.environment === undefined && Object.keys(environment).length === 0
      ? {}
      : {defaultEnvironment: name, environments: {[name]: environment}}),
  }
}

/**
 * Checks that the store can be used, and makes a local store's folder where it is missing: init is the
 * command that says so. Returns whether the store is new (holds nothing yet).
 */
async function prepareStore(context: Pick<ServiceSetup, 'now' | 'reporter'> & StoreSetupContext): Promise<boolean> {
  const {env} = context
  if (env.store.kind === 'local') await makeFolders(env.store.path)
  const empty = await storeCall(context, 'its listing', isEmptyStore(context))
  if (!empty) return false
  // The store is no longer empty, so the first backup does not announce it again. The marker decides
  // nothing else, so it needs no signature.
  const marker = {createdAt: context.now().toISOString(), what: 'a store of `divio app backup`; see its README'}
  await storeCall(
    context,
    'a write',
    putSmallObject(context.store, STORE_MARKER, `${JSON.stringify(marker, null, 2)}\n`),
  )
  context.reporter.notice(newStoreNotice(context))
  return true
}

/** Written by init into the store it sets up. */
const STORE_MARKER = 'divio-backup-store.json'

/** The AWS chain's variables set here, which a bucket without KEY:SECRET@ in its DSN takes its credentials from. */
const AWS_VARIABLES = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_REGION']
/** How this shell reaches S3: a private certificate authority, a proxy (docs/s3.md). */
const CONNECTION_VARIABLES = [
  'AWS_CA_BUNDLE',
  'NODE_EXTRA_CA_CERTS',
  'HTTPS_PROXY',
  'https_proxy',
  'HTTP_PROXY',
  'http_proxy',
  'NO_PROXY',
  'no_proxy',
]

/** What a bucket of this environment is reached with here, which the tick needs as much as init did. */
function awsVariablesUsed(env: ResolvedEnvironment, variables: NodeJS.ProcessEnv): string[] {
  const buckets = [env.store, env.media].filter((location) => location?.kind === 's3')
  if (buckets.length === 0) return []
  const credentials = buckets.some((bucket) => bucket.location.credentials === undefined) ? AWS_VARIABLES : []
  return [...credentials, ...CONNECTION_VARIABLES].filter((name) => variables[name])
}

/** Who runs this init, for the systemd unit's User= (a uid where the account has no name). */
function currentUser(): string | undefined {
  try {
    return userInfo().username
  } catch {
    return process.getuid?.()?.toString()
  }
}

/**
 * The cron line and systemd units that run the hourly tick of `schedule run` for this app. Both start
 * the tick with little of this shell: cron with PATH=/usr/bin:/bin (no /usr/local/bin, no nvm), systemd
 * as root unless told. So they carry this shell's PATH, which found node, divio and the dump tools
 * here, and the unit runs as this user, whose home holds the keys.
 */
function scheduleLines(
  root: string,
  environment: string,
  shell: {path: string | undefined; user: string | undefined},
): Pick<InitResult, 'cron' | 'systemd'> {
  const command = `divio app backup schedule run -e ${environment}`
  const path = [...new Set((shell.path ?? '').split(':').filter((entry) => isAbsolute(entry)))].join(':')
  return {
    // cron turns an unescaped % into a line break.
    cron: `17 * * * * cd ${shellQuote(root)} && ${path ? `PATH=${shellQuote(path)} ` : ''}${command}`.replaceAll(
      '%',
      String.raw`\%`,
    ),
    systemd: {
      service: [
        '# /etc/systemd/system/divio-backup.service',
        '[Unit]',
        'Description=Scheduled app backup (idempotent tick)',
        '',
        '[Service]',
        'Type=oneshot',
        ...(shell.user === undefined ? [] : [`User=${systemdValue(shell.user)}`]),
        `WorkingDirectory=${systemdValue(root)}`,
        ...(path ? [`Environment=${systemdQuote(`PATH=${path}`)}`] : []),
        `ExecStart=/usr/bin/env ${command}`,
      ].join('\n'),
      timer: [
        '# /etc/systemd/system/divio-backup.timer',
        '[Unit]',
        'Description=Run the app backup tick hourly',
        '',
        '[Timer]',
        'OnCalendar=hourly',
        'RandomizedDelaySec=5m',
        'Persistent=true',
        '',
        '[Install]',
        'WantedBy=timers.target',
      ].join('\n'),
    },
  }
}

/** A value as systemd reads it literally: `%` starts a specifier, so it is doubled. */
function systemdValue(text: string): string {
  return text.replaceAll('%', '%%')
}

/** An Environment= assignment in double quotes, for values with spaces: `\` and `"` escaped. */
function systemdQuote(assignment: string): string {
  return `"${systemdValue(assignment)
    .replaceAll('\\', '\\\\')
    .replaceAll('"', String.raw`\"`)}"`
}
