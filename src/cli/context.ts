import {tmpdir} from 'node:os'

import {loadEnvironment} from '../config/load.js'
import {clockFrom, isSystemClock} from '../lib/clock.js'
import {traceProcesses} from '../lib/process.js'
import {stallTimeoutMs} from '../lib/stall.js'
import {hookTimeoutMs} from '../proof/hooks.js'
import {BackupContext, Reporter, ServiceSetup} from '../services/context.js'
import {KeyRing} from '../services/keys.js'
import {stateFilePath} from '../services/machine-state.js'
import {openStore} from '../store/index.js'

/** Which environment a command acts on, as its flags say, and the version that goes into manifests. */
export interface ContextRequest {
  /** --config */
  configPath?: string
  /** --env */
  environment?: string
  toolVersion: string
}

/**
 * What every service gets from the command line and the process, before any config is read. Built on
 * the main thread for a command, and again on the service thread (service-thread/) from the same
 * parts, so that both see one context.
 */
export function serviceSetup(parts: {
  cwd: string
  reporter: Reporter
  signal: AbortSignal
  variables: NodeJS.ProcessEnv
  verbose?: boolean
}): ServiceSetup {
  const {reporter, variables} = parts
  traceProcesses(parts.verbose ? (line) => reporter.detail(`run ${line}`) : undefined)
  return {
    cwd: parts.cwd,
    keys: (env) =>
      new KeyRing({
        configured: env.recipients,
        configuredWriters: env.writers,
        variables,
        warn: (message) => reporter.notice(message),
      }),
    now: clockFrom(variables),
    reporter,
    signal: parts.signal,
    stallTimeoutMs: stallTimeoutMs(variables),
    systemClock: isSystemClock(variables),
    variables,
  }
}

/** The context of a service acting on the environment that `request` names (its config is read here). */
export async function serviceContext(setup: ServiceSetup, request: ContextRequest): Promise<BackupContext> {
  const {variables} = setup
  const env = await loadEnvironment({
    configPath: request.configPath,
    cwd: setup.cwd,
    environment: request.environment,
    variables,
  })
  return {
    env,
    hookTimeoutMs: hookTimeoutMs(variables),
    keys: setup.keys(env),
    now: setup.now,
    reporter: setup.reporter,
    signal: setup.signal,
    stallTimeoutMs: setup.stallTimeoutMs,
    statePath: stateFilePath(variables),
    store: openStore(env.store, env.root, {signal: setup.signal, stallTimeoutMs: setup.stallTimeoutMs}),
    systemClock: setup.systemClock,
    tempRoot: tempRootOf(variables),
    toolVersion: request.toolVersion,
  }
}

/** Where commands make their staging folders: DIVIO_BACKUP_TMPDIR, or the system temp folder. */
export function tempRootOf(variables: NodeJS.ProcessEnv): string {
  return variables.DIVIO_BACKUP_TMPDIR || tmpdir()
}
