import {randomBytes} from 'node:crypto'
import {readFile, rename, rm, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, join} from 'node:path'

import {makeFolders} from '../lib/folders.js'
import {Catalog} from './catalog.js'
import {BackupContext} from './context.js'

/**
 * What this machine remembers of each environment it has seen, between runs (docs/threat-model.md):
 * - the newest backup it has seen, so that a store rolled back to an older state (the newest backups
 *   hidden, or an old copy of the store put back) is noticed instead of silently restored from;
 * - the packs it has seen fail a check, which its creates no longer build on.
 *
 * A file of JSON, `$XDG_STATE_HOME/divio/backup-state.json` (`~/.local/state/…`), or
 * DIVIO_BACKUP_STATE_FILE. A new machine remembers nothing: it cannot tell a rolled-back store from
 * an old one. The file is rewritten whole, by rename, so a killed run leaves the old or the new one.
 */

interface EnvironmentState {
  failedPacks?: string[]
  newest?: {createdAt: string; id: string}
}

interface StateFile {
  environments: Record<string, EnvironmentState>
  version: 1
}

/** A store accumulates few failed packs; a bound keeps the file small whatever happens. */
const MAX_FAILED_PACKS = 10_000

export function stateFilePath(variables: NodeJS.ProcessEnv): string {
  if (variables.DIVIO_BACKUP_STATE_FILE) return variables.DIVIO_BACKUP_STATE_FILE
  const base = variables.XDG_STATE_HOME || join(variables.HOME || homedir(), '.local', 'state')
  return join(base, 'divio', 'backup-state.json')
}

function environmentKey(context: BackupContext): string {
  return `${context.store.description} ${context.env.app}/${context.env.name}`
}

async function readState(path: string): Promise<StateFile> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<StateFile>
    if (parsed.version === 1 && typeof parsed.environments === 'object' && parsed.environments !== null)
      return parsed as StateFile
  } catch {
    // Missing or unreadable: nothing remembered. Never a reason to fail a backup.
  }

  return {environments: {}, version: 1}
}

async function updateState(context: BackupContext, change: (state: EnvironmentState) => EnvironmentState) {
  const path = context.statePath
  const state = await readState(path)
  const key = environmentKey(context)
  state.environments[key] = change(state.environments[key] ?? {})
  const partial = `${path}.${randomBytes(4).toString('hex')}.partial`
  try {
    await makeFolders(dirname(path), 0o700)
    await writeFile(partial, `${JSON.stringify(state, null, 2)}\n`, {mode: 0o600})
    await rename(partial, path)
  } catch (error) {
    await rm(partial, {force: true})
    context.reporter.notice(`warning: could not record this machine's state in ${path}: ${(error as Error).message}`)
  }
}

async function environmentState(context: BackupContext): Promise<EnvironmentState> {
  return (await readState(context.statePath)).environments[environmentKey(context)] ?? {}
}

/** The packs this machine has seen fail a check in this environment. */
export async function failedPacks(context: BackupContext): Promise<Set<string>> {
  return new Set((await environmentState(context)).failedPacks ?? [])
}

export async function rememberFailedPacks(context: BackupContext, packs: readonly string[]): Promise<void> {
  if (packs.length === 0) return
  await updateState(context, (state) => ({
    ...state,
    failedPacks: [...new Set([...(state.failedPacks ?? []), ...packs])].slice(-MAX_FAILED_PACKS),
  }))
}

/** A store that shows less than this machine has seen: its newest backup is gone, damaged, or older. */
export interface Rollback {
  remembered: {createdAt: string; id: string}
  /** The store's newest complete backup, if any. */
  storeNewest?: {createdAt: string; id: string}
  why: string
}

/**
 * Compares the catalog with what this machine remembers, then remembers the catalog's newest backup
 * when it is newer. Returns the roll-back it sees, if any (and then remembers nothing).
 */
export async function checkForRollback(context: BackupContext, catalog: Catalog): Promise<Rollback | undefined> {
  const {newest: remembered} = await environmentState(context)
  const [latest] = catalog.complete
  const storeNewest = latest && {createdAt: latest.manifest.createdAt, id: latest.manifest.id}
  if (remembered !== undefined && (storeNewest === undefined || storeNewest.createdAt < remembered.createdAt)) {
    const damaged = catalog.damaged.some((backup) => backup.id === remembered.id)
    return {
      remembered,
      ...(storeNewest ? {storeNewest} : {}),
      why: damaged
        ? `backup ${remembered.id}, the newest this machine has seen, is now damaged`
        : `backup ${remembered.id} (${remembered.createdAt}), the newest this machine has seen, is no longer in the store`,
    }
  }

  if (storeNewest && (remembered === undefined || storeNewest.createdAt > remembered.createdAt))
    await updateState(context, (state) => ({...state, newest: storeNewest}))
  return undefined
}

/**
 * Accepts the store as it is now: what this machine deleted itself, or a roll-back the user confirmed
 * (`--allow-rollback`). The store's newest becomes the newest remembered.
 */
export async function acceptStoreState(context: BackupContext, catalog: Catalog): Promise<void> {
  const [latest] = catalog.complete
  await updateState(context, (state) => {
    const next = {...state}
    if (latest) next.newest = {createdAt: latest.manifest.createdAt, id: latest.manifest.id}
    else delete next.newest
    return next
  })
}

/**
 * This machine deleted `id`: if it was the newest remembered, the store's newest now takes its place,
 * so that a deletion of one's own is not taken for a roll-back.
 */
export async function forgetDeleted(context: BackupContext, id: string, catalog: () => Promise<Catalog>) {
  if ((await environmentState(context)).newest?.id !== id) return
  await acceptStoreState(context, await catalog())
}
