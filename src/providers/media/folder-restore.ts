import {randomBytes} from 'node:crypto'
import {constants} from 'node:fs'
import {access, chmod, lstat, mkdir, opendir, readdir, rename, rmdir} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

import {ExtractSummary} from '../../archive/extract.js'
import {BackupError, describeCause} from '../../errors.js'
import {makeFolders} from '../../lib/folders.js'
import {syncFileSystem, syncPath} from '../../lib/fsync.js'
import {startReaper} from '../../lib/guards.js'
import {isMountPoint, mountsBelow} from '../../lib/mounts.js'
import {giveTo, restoredOwner} from '../../lib/owner.js'
import {restoreTarget} from '../../lib/paths.js'
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
 *   So is a media folder in a folder that this user may not change (ownsOnlyTheFolder).
 *
 * Either way, the previous media is removed once the new media is in place and on disk.
 */
export async function prepareFolderRestore(
  root: string,
  fill: (folder: string) => Promise<ExtractSummary>,
  options: {signal?: AbortSignal} = {},
): Promise<PreparedMediaRestore> {
  const target = await restoreTarget(root, 'The media folder')
  await refuseNestedMounts(target)
  const suffix = randomBytes(6).toString('hex')
  const inside = (await isMountPoint(target)) || (await ownsOnlyTheFolder(target))
  const folders: SwapFolders = inside
    ? {
        fresh: join(target, `${WORK_PREFIX}restore-${suffix}`),
        inside,
        placing: join(target, `${WORK_PREFIX}placing-${suffix}`),
        previous: join(target, `${WORK_PREFIX}before-restore-${suffix}`),
        target,
      }
    : {
        fresh: join(dirname(target), `.${basename(target)}.restore-${suffix}`),
        inside,
        placing: join(dirname(target), `.${basename(target)}.placing-${suffix}`),
        previous: join(dirname(target), `.${basename(target)}.before-restore-${suffix}`),
        target,
      }
  const {fresh, previous} = folders
  await makeFolders(dirname(target))
  // The extraction is plaintext outside any temp folder, and no later command sweeps it; and a swap
  // that stops half-way leaves the media folder neither old nor new. A guard finishes either if this
  // process dies first (SIGKILL runs no cleanup), by what it finds on disk: see SWAP_GUARD.
  const guard = startReaper(SWAP_GUARD, [target, fresh, folders.placing, previous, inside ? 'inside' : 'beside'])
  const discard = async () => {
    await removeTree(fresh)
    guard.release()
  }

  let summary: ExtractSummary
  try {
    summary = await fill(fresh)
    // The media's owner, not root's, where root restores: the app must go on writing uploads into it.
    const owner = await restoredOwner(target)
    if (owner) await giveTo(fresh, owner, {signal: options.signal, tree: true})
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

  return {
    async commit() {
      const replaced = await (inside ? swapEntries(folders) : swapFolders(folders)).catch(async (error: unknown) => {
        if (error instanceof SwapNotUndone) {
          // Its previous entries are where the message says: not for the guard to remove.
          guard.dismiss()
          await removeTree(fresh)
          await removeTree(folders.placing)
          throw error.failure
        }

        await discard()
        if (error instanceof BackupError) throw error
        throw new BackupError(
          'OUTPUT_UNAVAILABLE',
          `The restored media could not be swapped into ${target}: ${describeCause(error)}. The media folder was left as it was.`,
          {cause: error, suggestion: 'Check the file system of the media folder, then run the restore again.'},
        )
      })
      // The renames on disk before the previous media goes. Until then a crash could bring the old
      // entries' names back; after the swap, the guard removes the previous media if this process dies.
      await syncPath(inside ? target : dirname(target))
      if (replaced) await removeTree(previous)
      guard.release()
      return {...summary, deleted: 0}
    },
    discard,
  }
}

/**
 * Whether this user may change the media folder but not the folder it is in: the app's user, on a
 * server where the app's code is root's and only its media is the app's. Nothing can be made beside
 * the media folder then, nor can it be renamed: the new tree is made inside it, as in a mount point.
 */
async function ownsOnlyTheFolder(target: string): Promise<boolean> {
  return (
    (await lstat(target).catch(() => {}))?.isDirectory() === true &&
    (await mayChange(target)) &&
    !(await mayChange(dirname(target)))
  )
}

/** Whether this user may add and remove names in `folder`. */
async function mayChange(folder: string): Promise<boolean> {
  // W_OK and X_OK are bits of their own: their sum asks for both.
  return access(folder, constants.W_OK + constants.X_OK).then(
    () => true,
    () => false,
  )
}

/**
 * Refuses a media folder with another file system mounted inside it (an uploads volume): the swap
 * moves the folder's contents by renaming them, which carries no file onto that file system. The
 * restored files landed on the disk beneath, the app's later uploads with them, while the volume, its
 * mount now under the previous media, was emptied as the previous media was removed.
 */
async function refuseNestedMounts(target: string): Promise<void> {
  const nested = await mountsBelow(target)
  if (nested.length === 0) return
  const more = nested.length > 1 ? ` and ${nested.length - 1} more` : ''
  throw new BackupError(
    'OUTPUT_UNAVAILABLE',
    `The media folder ${target} holds another file system, mounted at ${nested[0]}${more}: a restore swaps the folder's contents by renaming them, which cannot put files onto that file system. Nothing was changed.`,
    {
      suggestion: `Mount the volume as the media folder itself (a restore swaps a mount point's contents in place), or unmount it first; or extract by hand: \`divio app backup download ID --media-only -o DIR\`, then \`tar -xf DIR/media.tar --strip-components=1 -C ${target}\`.`,
    },
  )
}

/**
 * What the guard of a media restore does once the process is gone, decided by what is on disk, so
 * that a kill at any moment leaves the media folder as it was, or as the restore made it, whole:
 *
 * - The new entries are being placed (`placing`, in a mount point), so every old entry is aside: the
 *   new ones at the top go back into `placing`, which is renamed back to `fresh`; then as below.
 * - The extraction (`fresh`) exists: the swap has not ended. Old entries already moved aside go back
 *   (in a mount point, the entries of `previous`; beside it, `previous` itself where the target is
 *   gone, between the two renames), and the extraction is removed.
 * - Neither: the swap has ended, or never began; whatever is left of `previous` is removed.
 *
 * A move that fails stops the guard where it is, with every old entry either in place or in
 * `previous`, which it removes only once empty. Names are moved by globs, which take any bytes; `mv
 * -T` renames onto the name, never into a folder of that name. Arguments: target, fresh, placing,
 * previous, and "inside" for a mount point.
 */
export const SWAP_GUARD = `
target=$1 fresh=$2 placing=$3 previous=$4
move_all() {
  moved=0
  for entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    case "\${entry##*/}" in "\${fresh##*/}"|"\${placing##*/}"|"\${previous##*/}") continue ;; esac
    mv -T -- "$entry" "$2/\${entry##*/}" || moved=1
  done
  return $moved
}
if [ -d "$placing" ]; then
  move_all "$target" "$placing" && mv -T -- "$placing" "$fresh" || exit 1
fi
if [ -d "$fresh" ]; then
  if [ "$5" = inside ]; then
    [ ! -d "$previous" ] || { move_all "$previous" "$target" && rmdir -- "$previous"; }
  elif [ ! -e "$target" ] && [ -d "$previous" ]; then
    mv -T -- "$previous" "$target"
  fi
  rm -rf --one-file-system -- "$fresh"
else
  rm -rf --one-file-system -- "$previous"
fi`

/**
 * Where a restore moved the media folder aside, when it is gone: the one moment a guard cannot mend,
 * the machine going down between the swap's two renames. Undefined when nothing is there.
 */
export async function mediaMovedAside(root: string): Promise<string | undefined> {
  const prefix = `.${basename(root)}.before-restore-`
  const names = await readdir(dirname(root)).catch(() => [])
  const aside = names.find((name) => name.startsWith(prefix) && /^[\da-f]{12}$/.test(name.slice(prefix.length)))
  return aside === undefined ? undefined : join(dirname(root), aside)
}

/**
 * Whether `name`, at the top of a media folder, is one of a restore's work folders in a mount point:
 * a backup leaves them out (the safety backup, above all, runs while the new tree waits there).
 */
export function isRestoreWorkFolder(name: string): boolean {
  return WORK_FOLDER.test(name)
}

const WORK_PREFIX = '.divio-'
/** The extraction, kept out of every backup; after a crash mid-swap the others hold media, and are kept. */
const WORK_FOLDER = /^\.divio-restore-[\da-f]{12}$/

interface SwapFolders {
  fresh: string
  inside: boolean
  /** Where the extraction is while its entries are moved into place (a mount point only). */
  placing: string
  previous: string
  target: string
}

/** A swap that failed and could not move every old entry back: the guard must leave them be. */
class SwapNotUndone extends Error {
  constructor(readonly failure: BackupError) {
    super(failure.message)
  }
}

/** The new folder renamed into the target's place; true when there was a previous folder, now at `previous`. */
async function swapFolders({fresh, previous, target}: SwapFolders): Promise<boolean> {
  const before = await lstat(target).catch(() => {})
  const existed = before !== undefined
  // The extraction was private (0700) while it held plaintext; it takes the folder's own mode now.
  await chmod(fresh, before?.isDirectory() ? before.mode % 0o1_0000 : 0o755)
  if (existed) await rename(target, previous)
  try {
    await rename(fresh, target)
  } catch (error) {
    if (existed) {
      await rename(previous, target).catch((undoError: unknown) => {
        throw new SwapNotUndone(
          new BackupError(
            'OUTPUT_UNAVAILABLE',
            `The restored media could not be swapped into ${target} (${describeCause(error)}), and the previous media could not be moved back (${describeCause(undoError)}): it is in ${previous}.`,
            {cause: error, suggestion: `Rename ${previous} back to ${target}.`},
          ),
        )
      })
    }

    throw error
  }

  return existed
}

/**
 * The entries at the top of a mount point swapped: the old ones into `previous`, then the extraction
 * renamed to `placing` (which tells the guard that every old entry is aside) and its entries moved
 * into place. A failure undoes it in the same steps as the guard: the new entries back into
 * `placing`, renamed back to `fresh`, then the old ones back from `previous`; if that cannot be done,
 * `previous` is kept, and named. Each folder is read as a stream of names, which are bytes (they need
 * not be UTF-8): memory does not grow with a media folder of a million files at its top.
 */
async function swapEntries({fresh, placing, previous, target}: SwapFolders): Promise<boolean> {
  const work = new Set([basename(fresh), basename(placing), basename(previous)])
  await mkdir(previous, {mode: 0o700})
  let placed = false
  try {
    await moveEntries(target, previous, work)
    await rename(fresh, placing)
    placed = true
    await moveEntries(placing, target, work)
    await rmdir(placing)
  } catch (error) {
    const back = await (async () => {
      if (placed) {
        await moveEntries(target, placing, work)
        await rename(placing, fresh)
      }

      await moveEntries(previous, target, work)
    })().then(
      () => true,
      () => false,
    )
    if (!back) {
      throw new SwapNotUndone(
        new BackupError(
          'OUTPUT_UNAVAILABLE',
          `The media swap in ${target} failed (${describeCause(error)}), and some of its previous entries could not be moved back: they are in ${previous}.`,
          {cause: error, suggestion: `Move the entries of ${previous} back into ${target}.`},
        ),
      )
    }

    await rmdir(previous).catch(() => {})
    throw error
  }

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
