import {mkdir, stat} from 'node:fs/promises'
import {dirname} from 'node:path'

/**
 * `mkdir -p`, one level at a time. Node's recursive mkdir reports a read-only file system as ENOENT,
 * and spins for minutes under /proc; a plain mkdir of each missing level gives the real error at once.
 * A level whose parent exists and that still cannot be made "for want of a parent" is on a file system
 * that takes no new folders (procfs, sysfs): that is reported as such.
 */
export async function makeFolders(folder: string, mode?: number): Promise<void> {
  const missing: string[] = []
  for (let current = folder; ; current = dirname(current)) {
    const info = await stat(current).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return
      throw error
    })
    if (info !== undefined) break
    missing.unshift(current)
    if (dirname(current) === current) break
  }

  // With mode, only the folders made here get it, as with mkdir -p -m.
  for (const level of missing) {
    try {
      await mkdir(level, mode)
    } catch (error) {
      const {code} = error as NodeJS.ErrnoException
      if (code === 'EEXIST') continue
      if (code === 'ENOENT' && (await stat(dirname(level)).catch(() => {}))?.isDirectory()) {
        throw Object.assign(new Error(`the file system of ${dirname(level)} takes no new folders`), {
          code: 'EROFS',
          path: level,
        })
      }

      throw error
    }
  }
}
