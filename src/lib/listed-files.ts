import {close, closeSync, constants, fstat, fstatSync, open, openSync, Stats} from 'node:fs'

/**
 * Opening what a walk listed, and only that. The app writes its media folder while a backup reads it,
 * and a name can be swapped between the walk's lstat and the open: for a symlink to a file the app
 * cannot read but the backup's user can (a key, /etc/shadow), for a FIFO, whose open would wait for a
 * writer for good, or, for a folder on the way, for a symlink to a folder elsewhere. A backup that
 * followed such a name would store what is outside the media folder, and a restore would put it in
 * the media folder, which the app serves. So a file is opened without following a final symlink and
 * without waiting, and is read only if it is the regular file the listing named (same device and
 * inode); a folder is listed through the descriptor that was checked, not through its path again.
 * Anything else is answered as gone: the walk skips it, as it does a name deleted while it ran.
 */

/** The device and inode that lstat gave for a listed name. */
export interface FileIdentity {
  dev: number
  ino: number
}

/* eslint-disable no-bitwise -- open(2)'s flags are a bit mask */
const {O_DIRECTORY, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_RDONLY} = constants
/** Never through a symlink (the last component), never waiting on a FIFO, never a controlling terminal. */
const FILE_FLAGS = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY
/**
 * A file under another process's lease (a file server's, Samba's oplocks) answers a non-blocking open
 * with EAGAIN: opened again waiting, as any reader does, until the holder lets go (the kernel gives it
 * /proc/sys/fs/lease-break-time, 45 s). A FIFO never answers EAGAIN to a read-only open.
 */
const LEASED_FILE_FLAGS = O_RDONLY | O_NOFOLLOW | O_NOCTTY
/** A folder the walk reached; the media folder itself, which may be a symlink to where it lives. */
const FOLDER_FLAGS = O_RDONLY | O_DIRECTORY | O_NOFOLLOW
const ROOT_FLAGS = O_RDONLY | O_DIRECTORY
/* eslint-enable no-bitwise */

/**
 * What an open says when the name is no longer what was listed: gone, a symlink now (ELOOP), a socket
 * (ENXIO), a file where a folder was or on the way (ENOTDIR).
 */
const NOT_AS_LISTED = new Set(['ELOOP', 'ENOENT', 'ENOTDIR', 'ENXIO'])

export type Listed = 'file' | 'folder' | 'root'

/**
 * A descriptor for the listed file or folder at `path`, or undefined when it is gone or is not that
 * one. The media folder itself (`root`) is opened wherever its path leads, and its absence is an error.
 */
export function openListed(path: Buffer | string, what: Listed, expected?: FileIdentity): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const opened = (error: NodeJS.ErrnoException | null, descriptor: number) => {
      if (error) {
        // eslint-disable-next-line unicorn/no-useless-undefined -- undefined is the answer: not as listed
        if (isNotAsListed(error, what)) resolve(undefined)
        else reject(error)
        return
      }

      fstat(descriptor, (statError, info) => {
        if (!statError && isAsListed(info, what, expected)) {
          resolve(descriptor)
          return
        }

        // eslint-disable-next-line unicorn/no-useless-undefined -- undefined is the answer: not as listed
        close(descriptor, () => (statError ? reject(statError) : resolve(undefined)))
      })
    }

    open(path, flagsFor(what), (error, descriptor) => {
      if (error && isLeased(error, what)) open(path, LEASED_FILE_FLAGS, opened)
      else opened(error, descriptor)
    })
  })
}

/** {@link openListed}, with blocking calls: for the reader thread. */
export function openListedSync(path: Buffer | string, what: Listed, expected?: FileIdentity): number | undefined {
  let descriptor: number
  try {
    try {
      descriptor = openSync(path, flagsFor(what))
    } catch (error) {
      if (!isLeased(error, what)) throw error
      descriptor = openSync(path, LEASED_FILE_FLAGS)
    }
  } catch (error) {
    if (isNotAsListed(error, what)) return undefined
    throw error
  }

  let info: Stats
  try {
    info = fstatSync(descriptor)
  } catch (error) {
    closeSync(descriptor)
    throw error
  }

  if (isAsListed(info, what, expected)) return descriptor
  closeSync(descriptor)
  return undefined
}

/**
 * The path by which a folder open at `descriptor` is listed and its names are looked up: the folder
 * itself, whatever its path now leads to (Linux's /proc/self/fd). Where /proc is not mounted, the
 * folder's path, checked when it was opened but not after.
 */
export function pathThrough(descriptor: number, folder: Buffer): Buffer {
  return procFds() ? Buffer.from(`/proc/self/fd/${descriptor}`) : folder
}

/** A message that names the /proc path of a folder, naming the folder instead. */
export function namingFolder(message: string, through: Buffer, folder: Buffer): string {
  const proc = through.toString()
  return proc === folder.toString() ? message : message.split(proc).join(folder.toString())
}

function isLeased(error: unknown, what: Listed): boolean {
  const {code} = error as NodeJS.ErrnoException
  return what === 'file' && (code === 'EAGAIN' || code === 'EWOULDBLOCK')
}

function isNotAsListed(error: unknown, what: Listed): boolean {
  return what !== 'root' && NOT_AS_LISTED.has((error as NodeJS.ErrnoException).code ?? '')
}

function flagsFor(what: Listed): number {
  return what === 'file' ? FILE_FLAGS : what === 'folder' ? FOLDER_FLAGS : ROOT_FLAGS
}

function isAsListed(info: Stats, what: Listed, expected: FileIdentity | undefined): boolean {
  if (what === 'file' ? !info.isFile() : !info.isDirectory()) return false
  return expected === undefined || (info.dev === expected.dev && info.ino === expected.ino)
}

let hasProcFds: boolean | undefined

function procFds(): boolean {
  if (hasProcFds === undefined) {
    try {
      closeSync(openSync('/proc/self/fd', ROOT_FLAGS))
      hasProcFds = true
    } catch {
      hasProcFds = false
    }
  }

  return hasProcFds
}
