import {Readable, Writable} from 'node:stream'

/**
 * Resolves once a file stream's descriptor is closed, whether the stream ended, failed or was stopped;
 * with `destroy`, it is stopped first. A caller about to remove the file's folder waits for this: an
 * open descriptor keeps a removed file's bytes on disk, and a file still being opened makes the
 * removal fail. (events.once would reject on the stream's error, before the close.)
 */
export async function closeOf(stream: Readable | Writable, {destroy = false} = {}): Promise<void> {
  if (destroy) stream.destroy()
  if (stream.closed) return
  await new Promise<void>((resolve) => {
    stream.once('close', () => resolve())
  })
}
