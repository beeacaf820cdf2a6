import {MANIFEST_NAME} from '../domain/manifest.js'
import {BackupError} from '../errors.js'
import {assertReference, catalogOf, environmentPrefix, findBackupFor} from './catalog.js'
import {BackupContext} from './context.js'
import {forgetDeleted} from './machine-state.js'

export interface DeleteResult {
  deleted: string[]
  id: string
}

/** Resolves an id (or unique prefix) to the backup `delete` would remove, complete or not. */
export async function resolveForDelete(
  context: BackupContext,
  reference: string,
): Promise<{id: string; pinned: boolean; status: 'complete' | 'damaged' | 'incomplete'}> {
  assertReference(reference)
  const catalog = await catalogOf(context)
  const incomplete = catalog.incomplete.filter((backup) => backup.id.startsWith(reference))
  const damaged = catalog.damaged.filter((backup) => backup.id.startsWith(reference))
  const complete = catalog.complete.filter((backup) => backup.manifest.id.startsWith(reference))
  const others = incomplete.length + damaged.length
  if (reference !== 'latest' && complete.length === 0 && others === 1)
    return incomplete.length === 1
      ? {id: incomplete[0].id, pinned: false, status: 'incomplete'}
      : {id: damaged[0].id, pinned: damaged[0].pinned, status: 'damaged'}
  if (reference !== 'latest' && complete.length + others > 1) {
    throw new BackupError('USAGE', `"${reference}" matches ${complete.length + others} backups.`, {
      suggestion: 'Give more of the id; `divio app backup list --all` shows them.',
    })
  }

  const backup = findBackupFor(context, catalog, reference)
  return {id: backup.manifest.id, pinned: backup.pinned, status: 'complete'}
}

/**
 * Removes one backup: the manifest first, so that it stops existing before any data goes, then every
 * other object under its id. Idempotent: running it again after an interruption finishes the job.
 */
export async function deleteBackup(context: BackupContext, id: string): Promise<DeleteResult> {
  const prefix = `${environmentPrefix(context.env.app, context.env.name)}${id}/`
  const keys: string[] = []
  for await (const object of context.store.list(prefix)) keys.push(object.key)
  const manifestKey = `${prefix}${MANIFEST_NAME}`
  const ordered = [...keys.filter((key) => key === manifestKey), ...keys.filter((key) => key !== manifestKey)]
  for (const key of ordered) await context.store.delete(key)
  await forgetDeleted(context, id, async () => catalogOf(context))
  return {deleted: ordered.map((key) => key.slice(prefix.length)), id}
}
