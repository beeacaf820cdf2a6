import {randomBytes} from 'node:crypto'
import {readFileSync, readlinkSync} from 'node:fs'
import {chmod, lstat, mkdir, readdir, readFile, readlink} from 'node:fs/promises'
import {basename, dirname, isAbsolute, join, relative, resolve, sep} from 'node:path'

import {BackupError, tempFolderFailure} from '../errors.js'
import {removeAtExit} from './exit-guard.js'
import {sharedFolderOn} from './private-folder.js'
import {removeTree} from './remove-tree.js'

/**
 * Staging folders hold plaintext: database snapshots, media listings, decrypted downloads. They are
 * created 0700 (their files 0600) and named after the process that owns them,
 * `divio-<purpose>-<pid>-<pid namespace>-<start time>-<random>`, so that a later run can tell a folder
 * left by a killed process from one that a running process still uses.
 *
 * A pid alone says neither: in a container sharing the folder (DIVIO_BACKUP_TMPDIR), the same number is
 * another process, and a pid is reused once its process is gone. So a folder is ours to judge only when
 * it was made in our pid namespace; its process is alive only when that pid runs now with the start time
 * the name records (in clock ticks since boot, from /proc). A folder of another namespace, or whose pid
 * now belongs to another process, is removed once nothing in it has changed for a day.
 */
export const STAGING_PURPOSES = [
  'backup',
  'download',
  'drill',
  'export',
  'repack',
  'restore',
  'restore-apply',
  'verify',
] as const
export type StagingPurpose = (typeof STAGING_PURPOSES)[number]
const PURPOSES = STAGING_PURPOSES.join('|')
// Built from the one list: a purpose added later is swept too (a repack's decrypted indexes were not).
const OWNED_PATTERN = new RegExp(String.raw`^\.?divio-(?:${PURPOSES})-(\d+)-(\d+)-(\d+)-[\w-]{6}$`)
/** Folders of older versions carry a pid only, or nothing: they follow the age rule. */
const LEGACY_PATTERN = new RegExp(String.raw`^\.?divio-(?:${PURPOSES})-(?:\d+-)?[\w-]{6}$`)
const AGE_RULE_MS = 24 * 60 * 60 * 1000

interface ProcessIdentity {
  /** The inode of the pid namespace (0 where /proc does not say). */
  namespace: string
  /** Start time in clock ticks since boot (0 where /proc does not say). */
  startTime: string
}

let own: Promise<ProcessIdentity> | undefined

function ownIdentity(): Promise<ProcessIdentity> {
  own ??= identityOf('self')
  return own
}

async function identityOf(pid: 'self' | number): Promise<ProcessIdentity> {
  const namespace = await readlink(`/proc/${pid}/ns/pid`)
    .then((link) => namespaceOf(link))
    .catch(() => '0')
  return {namespace, startTime: (await startTimeOf(pid)) ?? '0'}
}

function namespaceOf(link: string): string {
  return /\[(\d+)]/.exec(link)?.[1] ?? '0'
}

async function startTimeOf(pid: 'self' | number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => {})
  return stat === undefined ? undefined : startTimeIn(stat)
}

/** Field 22 of /proc/<pid>/stat, after the command name (which may hold spaces and parentheses). */
function startTimeIn(stat: string): string | undefined {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

/**
 * What follows the purpose in the names of this process's staging folders, `<pid>-<namespace>-<start
 * time>`, read at once: for a watchdog that removes them once this process is gone. /proc answers
 * without blocking, whatever mount hangs.
 */
export function ownStagingTag(): string {
  let namespace = '0'
  let startTime: string | undefined
  try {
    namespace = namespaceOf(readlinkSync('/proc/self/ns/pid'))
    startTime = startTimeIn(readFileSync('/proc/self/stat', 'utf8'))
  } catch {
    // No /proc: the names hold zeros there too.
  }

  return `${process.pid}-${namespace}-${startTime ?? '0'}`
}

export async function makeStagingDir(parent: string, purpose: StagingPurpose, hidden = false): Promise<string> {
  // A download's staging folder is inside its output folder, which the download checks itself.
  if (!hidden) await refuseSharedTempFolder(parent)
  const {namespace, startTime} = await ownIdentity()
  const prefix = join(parent, `${hidden ? '.' : ''}divio-${purpose}-${process.pid}-${namespace}-${startTime}-`)
  for (;;) {
    const folder = prefix + randomBytes(6).toString('base64url').slice(0, 6)
    // It will hold plaintext: the exit guard removes it if this process dies (SIGKILL, a crash and the
    // OOM killer run no cleanup here), at once rather than at the next command's sweep. The guard is
    // told first, so that no moment is left where the folder exists and nothing would remove it.
    const guard = await removeAtExit('folder', folder)
    try {
      await mkdir(folder, {mode: 0o700})
    } catch (error) {
      // Nothing made here, or a name this process already holds (whose guard stays).
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue
      guard.forget()
      throw error
    }

    guards.set(folder, guard)
    // mkdir's mode passes through the umask; say 0700 explicitly, whatever the platform's default.
    await chmod(folder, 0o700)
    return folder
  }
}

/** The temp folders checked in this process, each once: a command makes several staging folders. */
const checkedTempFolders = new Map<string, Promise<void>>()

/** Refuses a temp folder that another user could change, before any plaintext is staged in it. */
async function refuseSharedTempFolder(folder: string): Promise<void> {
  let checked = checkedTempFolders.get(folder)
  if (checked === undefined) {
    checked = sharedFolderOn(folder).then((shared) => {
      if (shared === undefined) return
      throw new BackupError(
        'SOURCE_UNAVAILABLE',
        `The temp folder ${folder} is not safe for plaintext: ${shared.path} ${shared.why}, who could swap what is staged there for a link to a place of theirs, and read it. Nothing was staged.`,
        {suggestion: 'Point DIVIO_BACKUP_TMPDIR at a folder that only you (and root) can change.'},
      )
    })
    checkedTempFolders.set(folder, checked)
    // A refusal is not kept: the folder may be mended before the next command in this process.
    checked.catch(() => checkedTempFolders.delete(folder))
  }

  return checked
}

const guards = new Map<string, {forget(): void}>()

/** Removes a folder made by makeStagingDir; its guard forgets it (and keeps it if removal fails). */
export async function removeStagingDir(folder: string): Promise<void> {
  await removeTree(folder)
  guards.get(folder)?.forget()
  guards.delete(folder)
}

/** What each command's staging folder needs room for, for the message when it has none. */
const ROOM: Record<StagingPurpose, string> = {
  backup: "the backup's temp files",
  download: 'a decrypted copy of the backup',
  drill: 'a decrypted copy of the backup',
  export: 'the decrypted index of a backup',
  repack: 'the decrypted indexes of the backups and a few packs',
  restore: 'a decrypted copy of the backup',
  'restore-apply': 'a decrypted copy of the backup',
  verify: 'the decrypted index of a backup',
}

/**
 * A file system error on a file in one of this command's staging folders under `tempRoot`, explained
 * as the temp folder's (full, read-only, failing): neither the source nor the store nor the output
 * folder is to blame, and the user needs to hear about DIVIO_BACKUP_TMPDIR. Undefined for any other
 * error, and for a path elsewhere (a download's hidden staging folder inside its output folder is the
 * output's).
 */
export function tempFolderError(error: unknown, tempRoot: string): BackupError | undefined {
  const {code, path} = (error ?? {}) as NodeJS.ErrnoException
  if (error instanceof BackupError || typeof code !== 'string' || typeof path !== 'string') return undefined
  const inside = relative(resolve(tempRoot), resolve(path))
  const [folder, ...rest] = inside.split(sep)
  const purpose = /^divio-([a-z-]+?)-\d+-/.exec(folder ?? '')?.[1] as StagingPurpose | undefined
  if (rest.length === 0 || inside.startsWith('..') || isAbsolute(inside) || !OWNED_PATTERN.test(folder))
    return undefined
  const room = (purpose && ROOM[purpose]) ?? 'its temp files'
  return tempFolderFailure(error, `the temp file ${basename(path)}`, dirname(path), room)
}

/**
 * Removes the staging folders in `parent` whose process no longer runs, and those it cannot judge
 * (another pid namespace, a reused pid, an older version's) once untouched for a day. A folder whose
 * process is alive (or that belongs to another user's process) is left alone. Best effort: it never
 * fails the command that calls it, and returns the folders it removed.
 */
export async function sweepStaleStaging(parent: string, now = Date.now()): Promise<string[]> {
  const names = await readdir(parent).catch(() => [] as string[])
  const removed: string[] = []
  const self = await ownIdentity()
  for (const name of names) {
    const path = join(parent, name)
    const owned = OWNED_PATTERN.exec(name)
    let verdict: 'age rule' | 'keep' | 'remove'
    if (owned) verdict = await judge(Number(owned[1]), {namespace: owned[2], startTime: owned[3]}, self)
    else if (LEGACY_PATTERN.test(name)) verdict = 'age rule'
    else continue
    if (verdict === 'keep' || (verdict === 'age rule' && !(await untouchedFor(path, AGE_RULE_MS, now)))) continue
    try {
      await removeTree(path)
      removed.push(path)
    } catch {
      // Someone else's, or already gone: not ours to insist on.
    }
  }

  return removed
}

async function judge(
  pid: number,
  recorded: ProcessIdentity,
  self: ProcessIdentity,
): Promise<'age rule' | 'keep' | 'remove'> {
  if (recorded.namespace !== self.namespace || recorded.namespace === '0') return 'age rule'
  if (pid === process.pid) return recorded.startTime === self.startTime ? 'keep' : 'age rule'
  if (!isRunning(pid)) return 'remove'
  const startTime = await startTimeOf(pid)
  // Running with the recorded start time: its owner. Running as another user: it cannot be read.
  if (startTime === recorded.startTime || startTime === undefined) return 'keep'
  return 'age rule'
}

/** Whether nothing in the folder (it, or an entry directly in it) has changed for `ms`. */
async function untouchedFor(path: string, ms: number, now: number): Promise<boolean> {
  const times: number[] = []
  const info = await lstat(path).catch(() => {})
  if (info === undefined) return false
  times.push(info.mtimeMs, info.ctimeMs)
  for (const entry of await readdir(path).catch(() => [] as string[])) {
    const child = await lstat(join(path, entry)).catch(() => {})
    if (child) times.push(child.mtimeMs, child.ctimeMs)
  }

  return now - Math.max(...times) >= ms
}

/**
 * Whether the process a tag names (`<pid>-<pid namespace>-<start time>`, ownStagingTag) runs now: true
 * or false where this process can tell, undefined for a process of another pid namespace.
 */
export async function isTagAlive(tag: string): Promise<boolean | undefined> {
  const [pid, namespace, startTime] = tag.split('-')
  const verdict = await judge(Number(pid), {namespace, startTime}, await ownIdentity())
  return verdict === 'age rule' ? undefined : verdict === 'keep'
}

/** Whether process `pid` exists, as this user's or another's. */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
