import {randomBytes} from 'node:crypto'
import {lstat, mkdir, readdir, rm, rmdir, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {removeAtExit} from './exit-guard.js'
import {isTagAlive, ownStagingTag} from './staging.js'

/**
 * What runs on an environment on this machine now: a backup, a restore, or a scheduled tick. A backup
 * that walks the media folder while a restore swaps a new one in would hold part of the old files and
 * part of the new, a state that never was; so each marks what it does, in the app's
 * `.divio/running/<env>/`, and looks for the other kind. A tick looks for another tick: cron starts
 * one every hour, whether the last has ended or not. A mark is a file named after its process (`<activity>-<pid>-<pid namespace>-<start
 * time>-<random>`, as staging folders are): one whose process is gone counts for nothing, and a guard
 * removes it when its process dies, SIGKILL included.
 */
export type Activity = 'backup' | 'restore' | 'tick'

export interface ActivityMark {
  release(): Promise<void>
  /** When the mark was made, by the file's time, as others' marks are dated. */
  since: Date
}

/** A process doing the other kind of thing, as its mark says. */
export interface RunningActivity {
  pid: number
  /**
   * Whether its process was seen alive, here; false for a mark of another pid namespace (a container
   * sharing the app folder), which counts while young, though its process may have been killed.
   */
  seenAlive: boolean
  since: Date
}

const MARK = /^(backup|restore|tick)-(\d+-\d+-\d+)-[\w-]{6}$/
/** A mark of another pid namespace (a container sharing the app folder) counts while this young. */
const FOREIGN_MARK_MS = 24 * 60 * 60 * 1000

export function activityFolder(appFolder: string, environment: string): string {
  return join(appFolder, '.divio', 'running', encodeURIComponent(environment))
}

/**
 * Marks that this process does `activity` in `folder`. Best effort: where the app folder cannot be
 * written (a read-only deployment), nothing is marked, and the work goes on.
 */
export async function markActivity(folder: string, activity: Activity): Promise<ActivityMark | undefined> {
  const path = join(folder, `${activity}-${ownStagingTag()}-${randomBytes(6).toString('base64url').slice(0, 6)}`)
  // The exit guard removes the mark if this process dies, and with the last mark the environment's
  // folder and `running/`: the app folder keeps no trace. Told first, as for a staging folder.
  const guard = await removeAtExit('mark', path)
  // Another process's release may remove the folder between the two calls: then it is made again.
  for (let attempt = 1; ; attempt++) {
    try {
      await mkdir(folder, {recursive: true})
      await writeFile(path, `${new Date().toISOString()}\n`, {flag: 'wx'})
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= 3) {
        guard.forget()
        return undefined
      }
    }
  }

  const folders = [folder, dirname(folder)]
  const since = await lstat(path).then(
    (info) => info.mtime,
    () => new Date(),
  )
  return {
    async release() {
      await rm(path, {force: true})
      guard.forget()
      for (const made of folders) if (!(await removedIfEmpty(made))) break
    },
    since,
  }
}

/** The other processes whose marks in `folder` say they do `activity` now; marks of the dead are removed. */
export async function othersDoing(folder: string, activity: Activity): Promise<RunningActivity[]> {
  const names = await readdir(folder).catch(() => [] as string[])
  const own = ownStagingTag()
  const running: RunningActivity[] = []
  for (const name of names) {
    const parsed = MARK.exec(name)
    if (parsed === null || parsed[1] !== activity || parsed[2] === own) continue
    const path = join(folder, name)
    const info = await lstat(path).catch(() => {})
    if (info === undefined) continue
    const alive = await isTagAlive(parsed[2])
    if (alive === false) {
      await rm(path, {force: true}).catch(() => {})
      continue
    }

    if (alive === undefined && Date.now() - info.mtimeMs > FOREIGN_MARK_MS) continue
    running.push({pid: Number(parsed[2].split('-')[0]), seenAlive: alive === true, since: info.mtime})
  }

  return running
}

async function removedIfEmpty(folder: string): Promise<boolean> {
  try {
    await rmdir(folder)
    return true
  } catch {
    return false
  }
}
