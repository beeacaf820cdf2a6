import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CONFIG_RELATIVE_PATH, environmentFromConfig, findAppFolder, findConfigFile} from '../config/load.js'
import {BackupError} from '../errors.js'
import {makeFolders} from '../lib/folders.js'
import {shellQuote} from '../lib/shell.js'
import {openStore} from '../store/index.js'
import {ServiceSetup} from './context.js'
import {identityCreatedNotice, writerKeyCreatedNotice} from './keys.js'
import {putSmallObject} from './objects.js'
import {isEmptyStore, newStoreNotice, refuseNewIdentity, storeCall, StoreSetupContext} from './store-setup.js'

/** What `init` was asked for; anything left out keeps its zero-config default and is not written. */
export interface InitOptions {
  app?: string
  environment?: string
  /** Replace an existing config file. */
  force: boolean
  schedule?: {at: string; timezone?: string}
  store?: string
}

export interface InitResult {
  /** The config file as written: only what was asked for. */
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
}

/**
 * Sets an app up in one step: a minimal config (only what was asked for; every other field keeps its
 * zero-config default), a store that is checked (and made, saying so), and keys (made if there are
 * none, refused if the store already holds backups that a lost key encrypted). The config is written
 * last, so that a failed check leaves no config behind; a store folder it made stays, holding only its
 * marker, and the next init or create uses it.
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

  const config = minimalConfig(options)
  const env = await inTermsOfFlags(() => environmentFromConfig(config, configPath, {variables: setup.variables}))
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

  await makeFolders(join(configPath, '..'))
  await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`, {flag: options.force ? 'w' : 'wx'})
  return {
    config,
    configPath,
    ...scheduleLines(root, env.name),
    environment: {app: env.app, name: env.name, store: context.store.description},
    keys: {
      identityFile: context.keys.identityPath,
      identityGenerated,
      recipient: recipients.names,
      writerId: writer.id,
      writerKeyGenerated,
    },
    storeCreated,
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

/** The cron line and systemd units that run the hourly tick of `schedule run` for this app. */
function scheduleLines(root: string, environment: string): Pick<InitResult, 'cron' | 'systemd'> {
  const command = `divio app backup schedule run -e ${environment}`
  return {
    cron: `17 * * * * cd ${shellQuote(root)} && ${command}`,
    systemd: {
      service: [
        '# /etc/systemd/system/divio-backup.service',
        '[Unit]',
        'Description=Scheduled app backup (idempotent tick)',
        '',
        '[Service]',
        'Type=oneshot',
        `WorkingDirectory=${root}`,
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
