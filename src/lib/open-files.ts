import {readdirSync, readFileSync, readlinkSync} from 'node:fs'

/** A process that has one of the files open. */
export interface Holder {
  /**
   * Its program's name (`comm`: gunicorn, python3, sqlite3), never its command line, which may carry
   * a password.
   */
  command: string
  pid: number
}

/**
 * The other processes that have any of `paths` open, by Linux's /proc/<pid>/fd: each descriptor's
 * link names the file it is open on, as this process's mount namespace sees it. Only links are read,
 * never the files, and /proc answers from the kernel's own tables without waiting on any disk, which
 * is why the calls are blocking ones: a busy server's hundred thousand descriptors take a fraction
 * of a second this way, and seconds through the thread pool. Processes this user may not look into
 * (another user's, unless root), in another mount namespace (a container), or where /proc is not
 * mounted, are not seen: a best effort, which finds the app run by the same user on the same machine.
 */
export function processesHolding(paths: readonly string[]): Holder[] {
  const wanted = new Set(paths)
  const holders: Holder[] = []
  for (const name of entries('/proc')) {
    const pid = Number(name)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    const folder = `/proc/${pid}/fd`
    if (entries(folder).some((descriptor) => wanted.has(linkOf(`${folder}/${descriptor}`)))) {
      holders.push({command: commandOf(pid), pid})
    }
  }

  return holders
}

/** A folder's names; none where it is gone meanwhile, or not ours to look into. */
function entries(folder: string): string[] {
  try {
    return readdirSync(folder)
  } catch {
    return []
  }
}

function linkOf(path: string): string {
  try {
    return readlinkSync(path)
  } catch {
    return ''
  }
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() || '?'
  } catch {
    return '?'
  }
}
