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

/**
 * Resolves once a stream that refused a write takes writes again, or is closed (its consumer failed):
 * whichever comes first. Both listeners go, so that a long stream written many times does not pile
 * them up, as events.once for each would.
 */
export async function drainedOrClosed(stream: Writable): Promise<void> {
  await new Promise<void>((resolve) => {
    const done = () => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }

    stream.on('drain', done)
    stream.on('close', done)
  })
}
