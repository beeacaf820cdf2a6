import {randomBytes} from 'node:crypto'
import {chmod, lstat, mkdir, opendir, readFile, rename, rmdir} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

import {ExtractSummary} from '../../archive/extract.js'
import {BackupError, describeCause} from '../../errors.js'
import {makeFolders} from '../../lib/folders.js'
import {syncFileSystem, syncPath} from '../../lib/fsync.js'
import {restoreTarget} from '../../lib/paths.js'
import {startReaper} from '../../lib/process.js'
import {removeTree} from '../../lib/remove-tree.js'
import {PreparedMediaRestore} from './port.js'

/**
 * Restoring a media folder. The archive is extracted and checked into a new, private folder, flushed to
 * disk, and only then swapped in; until the swap the media folder is untouched. A folder that is a
 * link keeps its link (the folder it leads to is replaced). The swap depends on where the folder is:
 *
 * - An ordinary folder: the new one is made beside it, and two renames swap them.
 * - A mount point (a volume mounted as the media folder, as containers do): it cannot be renamed, and
 *   nothing beside it is on its file system. The new tree is made inside it, in a work folder, and the
 *   swap moves the entries at its top: the old ones into a second work folder, then the new ones into
 *   place. Each move is one rename; the swap is as many renames as the folder has top-level entries.
 *
 * Either way, the previous media is removed once the new media is in place and on disk.
 */
export async function prepareFolderRestore(
  root: string,
  fill: (folder: string) => Promise<ExtractSummary>,
  options: {signal?: AbortSignal} = {},
): Promise<PreparedMediaRestore> {
  const target = await restoreTarget(root, 'The media folder')
  const suffix = randomBytes(6).toString('hex')
  const inside = await isMountPoint(target)
  const [fresh, previous] = inside
    ? [join(target, `${WORK_PREFIX}restore-${suffix}`), join(target, `${WORK_PREFIX}before-restore-${suffix}`)]
    : [
        join(dirname(target), `.${basename(target)}.restore-${suffix}`),
        join(dirname(target), `.${basename(target)}.before-restore-${suffix}`),
      ]
  await makeFolders(dirname(target))
  // The extraction is plaintext outside any temp folder, and no later command sweeps it: a guard
  // removes it if this process dies before it is swapped in or discarded (SIGKILL runs no cleanup).
  const extraction = startReaper('rm -rf -- "$1"', [fresh])
  const discard = async () => {
    await removeTree(fresh)
    extraction.release()
  }

  let summary: ExtractSummary
  try {
    summary = await fill(fresh)
    // On disk before the swap: the previous media is removed right after it, and a crash must not
    // leave a media folder of files whose contents were still only in memory.
    await syncFileSystem(fresh, options.signal).catch((error: unknown) => {
      if (options.signal?.aborted) throw error
      throw new BackupError(
        'OUTPUT_UNAVAILABLE',
        `The restored media could not be flushed to disk: ${describeCause(error)}.`,
        {
          cause: error,
          suggestion:
            'Check the disk that holds the media folder, and that `sync` is on PATH, then run the restore again.',
        },
      )
    })
  } catch (error) {
    await discard()
    throw error instanceof BackupError
      ? new BackupError(error.code, `${error.message} The media folder ${target} was not changed.`, {
          cause: error,
          exitCode: error.exitCode,
          suggestion: error.suggestion,
        })
      : error
  }

  const folders = {fresh, previous, target}
  return {
    async commit() {
      const replaced = await (inside ? swapEntries(folders, discard) : swapFolders(folders, discard)).catch(
        (error: unknown) => {
          if (error instanceof BackupError) throw error
          throw new BackupError(
            'OUTPUT_UNAVAILABLE',
            `The restored media could not be swapped into ${target}: ${describeCause(error)}. The media folder was left as it was.`,
            {cause: error, suggestion: 'Check the file system of the media folder, then run the restore again.'},
          )
        },
      )
      // Nothing is left under the extraction's name for its guard. Until the swap, the previous media
      // was the only copy of the folder's old contents: only now may a guard remove it.
      extraction.release()
      const guard = replaced ? startReaper('rm -rf -- "$1"', [previous]) : undefined
      // The renames on disk before the previous media goes.
      await syncPath(inside ? target : dirname(target))
      if (replaced) await removeTree(previous)
      guard?.release()
      return {...summary, deleted: 0}
    },
    discard,
  }
}

/**
 * Whether `name`, at the top of a media folder, is one of a restore's work folders in a mount point:
 * a backup leaves them out (the safety backup, above all, runs while the new tree waits there).
 */
export function isRestoreWorkFolder(name: string): boolean {
  return WORK_FOLDER.test(name)
}

const WORK_PREFIX = '.divio-'
const WORK_FOLDER = /^\.divio-(?:before-)?restore-[\da-f]{12}$/

interface SwapFolders {
  fresh: string
  previous: string
  target: string
}

/** The new folder renamed into the target's place; true when there was a previous folder, now at `previous`. */
async function swapFolders({fresh, previous, target}: SwapFolders, discard: () => Promise<void>): Promise<boolean> {
  const before = await lstat(target).catch(() => {})
  const existed = before !== undefined
  // The extraction was private (0700) while it held plaintext; it takes the folder's own mode now.
  await chmod(fresh, before?.isDirectory() ? before.mode % 0o1_0000 : 0o755)
  if (existed) await rename(target, previous)
  try {
    await rename(fresh, target)
  } catch (error) {
    if (existed) await rename(previous, target)
    await discard()
    throw error
  }

  return existed
}

/**
 * The entries at the top of a mount point swapped: the old ones into `previous`, then the new ones out
 * of `fresh`. A failure moves them back by where they are (every entry of the target but the work
 * folders is a new one once the old ones have all left); if an old entry cannot go back, `previous`
 * is kept, and named. Each folder is read as a stream of names, which are bytes (they need not be
 * UTF-8): memory does not grow with a media folder of a million files at its top.
 */
async function swapEntries({fresh, previous, target}: SwapFolders, discard: () => Promise<void>): Promise<boolean> {
  const work = new Set([basename(fresh), basename(previous)])
  await mkdir(previous, {mode: 0o700})
  let placing = false
  try {
    await moveEntries(target, previous, work)
    placing = true
    await moveEntries(fresh, target)
  } catch (error) {
    if (placing) await moveEntries(target, fresh, work).catch(() => {})
    const back = await moveEntries(previous, target).then(
      () => true,
      () => false,
    )
    await discard()
    if (!back) {
      throw new BackupError(
        'OUTPUT_UNAVAILABLE',
        `The media swap in ${target} failed (${describeCause(error)}), and some of its previous entries could not be moved back: they are in ${previous}.`,
        {cause: error, suggestion: `Move the entries of ${previous} back into ${target}.`},
      )
    }

    await rmdir(previous).catch(() => {})
    throw error
  }

  await rmdir(fresh)
  return true
}

/** Moves every entry of `from` but those named in `skip` into `to`, one rename each. */
async function moveEntries(from: string, to: string, skip: ReadonlySet<string> = new Set()): Promise<void> {
  // A name not yet read stays readable while others leave the folder. Node.js gives Buffer names for
  // this encoding, though its types only name string encodings.
  for await (const entry of await opendir(from, {encoding: 'buffer' as BufferEncoding})) {
    const name = entry.name as unknown as Buffer
    if (skip.has(name.toString('latin1'))) continue
    await rename(entryPath(from, name), entryPath(to, name))
  }
}

function entryPath(folder: string, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${folder}/`), name])
}

/**
 * Whether `path` is where a file system is mounted: by the mount table where there is one (a bind
 * mount of a folder of the same file system has the same device number as its parent), else by the
 * device numbers.
 */
async function isMountPoint(path: string): Promise<boolean> {
  const table = await readFile('/proc/self/mountinfo', 'utf8').catch(() => {})
  if (table !== undefined) return table.split('\n').some((line) => mountPointOf(line) === path)
  const [own, parent] = await Promise.all([lstat(path).catch(() => {}), lstat(dirname(path)).catch(() => {})])
  return own !== undefined && parent !== undefined && own.dev !== parent.dev
}

/** The fifth field of a line of /proc/self/mountinfo, with its octal escapes (`\040` a space) undone. */
function mountPointOf(line: string): string {
  return (line.split(' ')[4] ?? '').replaceAll(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCodePoint(Number.parseInt(octal, 8)),
  )
}
