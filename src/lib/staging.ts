import {chmod, lstat, mkdtemp, readdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

/**
 * Staging folders hold plaintext: database snapshots, media listings, decrypted downloads. They are
 * created 0700 (their files 0600) and named after the process that owns them,
 * `divio-<purpose>-<pid>-<random>`, so that a later run can tell a folder left by a killed process
 * from one that a running process still uses.
 */
export const STAGING_PURPOSES = [
  'backup',
  'download',
  'export',
  'repack',
  'restore',
  'restore-apply',
  'verify',
] as const
export type StagingPurpose = (typeof STAGING_PURPOSES)[number]
// Built from the one list: a purpose added later is swept too (a repack's decrypted indexes were not).
const STAGING_PATTERN = new RegExp(String.raw`^\.?divio-(?:${STAGING_PURPOSES.join('|')})-(\d+)-[\w-]+$`)
/** Folders of older versions carry no pid: they are removed once nothing has touched them for this long. */
const UNOWNED_PATTERN = /^\.?divio-(?:backup|download|restore|restore-apply)-[\w-]{6}$/
const UNOWNED_GRACE_MS = 24 * 60 * 60 * 1000

export async function makeStagingDir(parent: string, purpose: StagingPurpose, hidden = false): Promise<string> {
  const folder = await mkdtemp(join(parent, `${hidden ? '.' : ''}divio-${purpose}-${process.pid}-`))
  // mkdtemp already uses 0700; say so explicitly, whatever the platform's default.
  await chmod(folder, 0o700)
  return folder
}

/**
 * Removes the staging folders in `parent` whose process no longer runs. A folder whose process is
 * alive (or that belongs to another user's process) is left alone. Best effort: it never fails the
 * command that calls it, and returns the folders it removed.
 */
export async function sweepStaleStaging(parent: string, now = Date.now()): Promise<string[]> {
  const names = await readdir(parent).catch(() => [] as string[])
  const removed: string[] = []
  for (const name of names) {
    const owned = STAGING_PATTERN.exec(name)
    const path = join(parent, name)
    if (owned) {
      if (isRunning(Number(owned[1]))) continue
    } else if (UNOWNED_PATTERN.test(name)) {
      const info = await lstat(path).catch(() => {})
      if (info === undefined || now - info.mtimeMs < UNOWNED_GRACE_MS) continue
    } else {
      continue
    }

    try {
      await rm(path, {force: true, recursive: true})
      removed.push(path)
    } catch {
      // Someone else's, or already gone: not ours to insist on.
    }
  }

  return removed
}

function isRunning(pid: number): boolean {
  if (pid === process.pid) return true
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
