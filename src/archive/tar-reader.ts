import {once} from 'node:events'
import {Readable} from 'node:stream'
import {Parser, ReadEntry} from 'tar'

/** One member of a tar archive, as {@link readTar} yields it. */
export interface TarMember {
  /** Must be read to the end (or the member skipped by not touching it) before the next one arrives. */
  body: Readable
  linkTarget?: string
  mode: number
  mtime: Date
  path: string
  /** node-tar's name for the member type (`File`, `Link`, `CharacterDevice`, …), for messages. */
  rawType: string
  size: number
  type: 'directory' | 'file' | 'other' | 'symlink'
}

/**
 * Reads a tar stream member by member, with node-tar's parser in strict mode: a damaged or truncated
 * archive is an error, never a shorter list. A member's body that the consumer leaves unread is skipped.
 * Memory stays flat: the parser waits while the consumer reads a member.
 *
 * @yields each member in archive order
 */
export async function* readTar(source: Readable): AsyncGenerator<TarMember> {
  const parser = new Parser({strict: true})
  const queue: ReadEntry[] = []
  let failure: Error | undefined
  let finished = false
  let wake: (() => void) | undefined
  const notify = () => {
    wake?.()
    wake = undefined
  }

  parser.on('entry', (entry: ReadEntry) => {
    entry.pause()
    queue.push(entry)
    notify()
  })
  // The member being read, if any: a failure of the source must end its body too, or a consumer in
  // the middle of a member would wait for bytes that never come.
  let current: ReadEntry | undefined
  const fail = (error: Error) => {
    failure ??= error
    current?.emit('error', failure)
    notify()
  }

  parser.on('error', fail)
  parser.on('end', () => {
    finished = true
    notify()
  })
  const feeding = (async () => {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (!parser.write(chunk)) await once(parser, 'drain')
    }

    parser.end()
  })().catch(fail)

  try {
    for (;;) {
      const entry = queue.shift()
      if (entry) {
        current = entry
        const body = Readable.from(exactly(entry, entry.size ?? 0, entry.path), {objectMode: false})
        yield {
          body,
          linkTarget: entry.linkpath || undefined,
          mode: entry.mode ?? 0o644,
          mtime: entry.mtime ?? new Date(0),
          path: entry.path,
          rawType: entry.type,
          size: entry.size ?? 0,
          type: typeOf(entry.type),
        }
        // Whatever the consumer did not read is drained, so the parser moves on.
        body.destroy()
        current = undefined
        entry.resume()
        continue
      }

      if (failure) throw failure
      if (finished) break
      await new Promise<void>((resolve) => {
        wake = resolve
      })
    }

    await feeding
    if (failure) throw failure
  } finally {
    source.destroy()
  }
}

// A truncated archive ends a member's body early; say so there, not only after the last member.
async function* exactly(entry: ReadEntry, size: number, path: string): AsyncGenerator<Buffer> {
  let read = 0
  for await (const chunk of entry as AsyncIterable<Buffer>) {
    read += chunk.length
    yield chunk
  }

  if (read < size) throw new Error(`the archive is truncated: ${path} has ${read} of its ${size} bytes`)
}

const MEMBER_TYPES: Record<string, TarMember['type']> = {
  ContiguousFile: 'file',
  Directory: 'directory',
  File: 'file',
  OldFile: 'file',
  SymbolicLink: 'symlink',
}

function typeOf(type: string): TarMember['type'] {
  return MEMBER_TYPES[type] ?? 'other'
}
