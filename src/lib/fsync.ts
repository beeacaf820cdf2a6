import {open} from 'node:fs/promises'

/** fsync by path: on Linux any read-only descriptor of a file, or of a folder, flushes it. */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
