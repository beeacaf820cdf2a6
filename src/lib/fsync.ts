import {open} from 'node:fs/promises'

import {run} from './process.js'

/** fsync by path: on Linux any read-only descriptor of a file, or of a folder, flushes it. */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * Flushes everything written to the file system that holds `folder`: syncfs(2), by coreutils' `sync
 * -f`. One call makes a whole restored tree durable, where an fsync a file would commit the file
 * system's journal once a file. Where `sync` takes no -f (it is not GNU's), a plain `sync`, which
 * flushes every file system.
 */
export async function syncFileSystem(folder: string, signal?: AbortSignal): Promise<void> {
  try {
    await run('sync', ['-f', folder], {signal})
  } catch (error) {
    if (signal?.aborted) throw error
    await run('sync', [], {signal})
  }
}
