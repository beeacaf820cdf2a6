import {randomBytes} from 'node:crypto'
import {rename, rm, writeFile} from 'node:fs/promises'
import {dirname} from 'node:path'

import {syncPath} from './fsync.js'

/**
 * Replaces `path` with `content` so that a reader sees the old file or the new one, never a part:
 * written beside it (same file system), flushed, then renamed over it. node_exporter's textfile
 * collector reads its folder at any moment; this is how its documentation asks files to be written.
 */
export async function writeFileAtomically(path: string, content: string, mode = 0o644): Promise<void> {
  const partial = `${path}.${randomBytes(4).toString('hex')}.partial`
  try {
    await writeFile(partial, content, {flag: 'wx', mode})
    await syncPath(partial)
    await rename(partial, path)
    await syncPath(dirname(path))
  } catch (error) {
    await rm(partial, {force: true})
    throw error
  }
}
