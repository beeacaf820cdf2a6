import {environmentNames, loadEnvironment, redactDsn} from '../config/load.js'
import {nextSlot} from '../domain/schedule.js'
import {BackupError} from '../errors.js'
import {writeFileAtomically} from '../lib/atomic-write.js'
import {Freshness, freshnessOf} from '../proof/freshness.js'
import {renderMetrics} from '../proof/metrics.js'
import {openStore} from '../store/index.js'
import {readCatalog} from './catalog.js'
import {clockDoubt} from './clock.js'
import {ServiceSetup} from './context.js'
import {lastDrills} from './list.js'
import {storeCall} from './store-setup.js'

export interface StatusOptions {
  /** `--config`. */
  configPath?: string
  /** `-e`: only this environment; otherwise every environment of the config. */
  environment?: string
  /** `--max-age`, in seconds: each environment is then `late` or not. */
  maxAgeSeconds?: number
  /** `--format prometheus --output FILE`: the metrics are written there, replacing it in one step. */
  metricsFile?: string
}

/** One environment in `status --json`. */
export interface EnvironmentStatus extends Partial<Freshness> {
  app: string
  /**
   * Why this machine's clock cannot be trusted with the environment (services/clock.ts): its backups'
   * ages cannot be judged, and with --max-age it is late.
   */
  clock?: string
  environment: string
  /** Why the environment could not be read (its config, or its store); then nothing else is known. */
  error?: {code: string; message: string}
  /** The next slot of its schedule; null without one. */
  nextScheduledAt: null | string
  store: string
}

export interface StatusResult {
  checkedAt: string
  environments: EnvironmentStatus[]
  /** `--max-age`, in seconds, when given. */
  maxAgeSeconds?: number
  /** False when any environment is late or could not be read: `status --max-age` then exits 1. */
  ok: boolean
}

/**
 * Is every environment fresh? For each one, from its own store: the newest complete backup and its
 * age, the newest per component, the damaged ones, and the next scheduled slot. An environment whose
 * config or store fails is reported as such; it never hides the others, and it is never fresh.
 */
export async function backupStatus(setup: ServiceSetup, options: StatusOptions): Promise<StatusResult> {
  const now = setup.now()
  const load = {configPath: options.configPath, cwd: setup.cwd, variables: setup.variables}
  const names = options.environment === undefined ? await environmentNames(load) : [options.environment]
  const environments: EnvironmentStatus[] = []
  for (const name of names) {
    // An unknown -e is a usage error, as for every other command; other failures are one row's.
    if (options.environment !== undefined) await loadEnvironment({...load, environment: name})
    environments.push(await statusOf(setup, {...load, environment: name}, now, options.maxAgeSeconds))
  }

  const ok = environments.every((status) => status.error === undefined && status.late !== true)
  if (options.metricsFile !== undefined) await writeFileAtomically(options.metricsFile, renderMetrics(environments))
  return {
    checkedAt: now.toISOString(),
    environments,
    ...(options.maxAgeSeconds === undefined ? {} : {maxAgeSeconds: options.maxAgeSeconds}),
    ok,
  }
}

async function statusOf(
  setup: ServiceSetup,
  load: Parameters<typeof loadEnvironment>[0] & {environment: string},
  now: Date,
  maxAgeSeconds: number | undefined,
): Promise<EnvironmentStatus> {
  let env
  try {
    env = await loadEnvironment(load)
  } catch (error) {
    if (!(error instanceof BackupError)) throw error
    return {
      app: '-',
      environment: load.environment,
      error: errorOf(error),
      nextScheduledAt: null,
      store: '-',
      ...(maxAgeSeconds === undefined ? {} : {late: true}),
    }
  }

  const store = openStore(env.store, env.root, {signal: setup.signal, stallTimeoutMs: setup.stallTimeoutMs})
  const row = {
    app: env.app,
    environment: env.name,
    nextScheduledAt: env.schedule ? nextSlot(env.schedule, now).toISOString() : null,
    store: store.description,
  }
  try {
    const keys = setup.keys(env)
    const context = {env, keys, signal: setup.signal, stallTimeoutMs: setup.stallTimeoutMs, store}
    const catalog = await storeCall(
      context,
      'its listing',
      (async () => readCatalog(store, {app: env.app, environment: env.name}, await keys.trustedWriters()))(),
    )
    const drills = await storeCall(context, 'a read', lastDrills({keys, store}, catalog))
    const freshness = freshnessOf(catalog, now, maxAgeSeconds, drills)
    const clock = clockDoubt({now: () => now, store, systemClock: setup.systemClock}, catalog)
    if (clock === undefined) return {...row, ...freshness}
    return {...row, ...freshness, clock, ...(maxAgeSeconds === undefined ? {} : {late: true})}
  } catch (error) {
    if (setup.signal.aborted) throw error
    return {...row, error: errorOf(error), ...(maxAgeSeconds === undefined ? {} : {late: true})}
  }
}

function errorOf(error: unknown): {code: string; message: string} {
  if (error instanceof BackupError) return {code: error.code, message: redactDsn(error.message)}
  return {code: 'STORE_UNAVAILABLE', message: redactDsn((error as Error).message ?? String(error))}
}
