import {BackupView} from '../domain/backup.js'
import {PIN_NAME} from '../domain/manifest.js'
import {catalogOf, findBackupFor, objectKey} from './catalog.js'
import {BackupContext} from './context.js'
import {viewsOf} from './list.js'
import {putSmallObject} from './objects.js'

export interface PinResult extends BackupView {
  /** False when the backup already was as asked (pinned twice, or unpinned when it was not pinned). */
  changed: boolean
}

/** Pins or unpins a backup: a `pin` object beside the manifest keeps it whatever the policy says. */
export async function setPinned(context: BackupContext, reference: string, pinned: boolean): Promise<PinResult> {
  const {app, name} = context.env
  const catalog = await catalogOf(context)
  const backup = findBackupFor(context, catalog, reference)
  if (backup.pinned === pinned) {
    const view = viewsOf(context, catalog, {all: false}).find(({id}) => id === backup.manifest.id)!
    return {...view, changed: false}
  }

  const key = objectKey(app, name, backup.manifest.id, PIN_NAME)
  await (pinned
    ? putSmallObject(context.store, key, `${JSON.stringify({pinnedAt: context.now().toISOString()})}\n`)
    : context.store.delete(key))
  backup.pinned = pinned
  return {...viewsOf(context, catalog, {all: false}).find((view) => view.id === backup.manifest.id)!, changed: true}
}
