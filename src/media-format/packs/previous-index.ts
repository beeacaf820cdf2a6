import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {X25519Identity} from '../../archive/age-keys.js'
import {isPacked, Manifest} from '../../domain/manifest.js'
import {BackupContext} from '../../services/context.js'
import {IndexEntry} from './media-index.js'
import {readIndexFile, readIndexLines} from './read.js'

/** How the index and the walk are sorted: the provider's order. */
export type EntryOrder = (a: {path: string; type: string}, b: {path: string; type: string}) => number

export interface IndexCursor {
  /** The previous entry of this path and type's place, if any; entries must be asked for in order. */
  seek(entry: {path: string; type: string}): Promise<IndexEntry | undefined>
}

/** The previous backup's index, read forward along with the walk. */
export interface PreviousIndex {
  close(): Promise<void>
  /**
   * Two cursors over one reading of the index, which is in `order`: `current` for the walk, and
   * `ahead` for the provider's read-ahead, which asks about files before the walk reaches them. Each
   * line is parsed once: what `ahead` has read and `current` has not yet passed is kept, as many
   * entries as the provider reads ahead, and `ahead` never falls behind `current`.
   */
  cursors(order: EntryOrder): {ahead: IndexCursor; current: IndexCursor}
  /** Every entry, once through, in the index's order. */
  entries(): AsyncGenerator<IndexEntry, void>
}

const NONE: IndexCursor = {seek: async () => undefined as IndexEntry | undefined}

const NO_PREVIOUS: PreviousIndex = {
  async close() {},
  cursors: () => ({ahead: NONE, current: NONE}),
  async *entries() {},
}

/**
 * The previous backup's index, decrypted to a temp file. Without one (a first backup, a tar-format
 * one, or an index that cannot be read, which is reported), every file is read.
 */
export async function previousIndex(
  context: BackupContext,
  previous: Manifest | undefined,
  identity: X25519Identity,
  tempDir: string,
): Promise<PreviousIndex> {
  const media = previous?.components.media
  if (previous === undefined || media === undefined || !isPacked(media)) return NO_PREVIOUS
  const path = join(tempDir, 'previous.index')
  try {
    await readIndexFile(context, previous, [identity], path)
  } catch (error) {
    // Not fatal: without the previous index every file is read, and the backup is still whole.
    await rm(path, {force: true})
    context.reporter.notice(
      `warning: the index of backup ${previous.id} could not be read (${(error as Error).message}); every media file is read again.`,
    )
    return NO_PREVIOUS
  }

  const readers: AsyncGenerator<IndexEntry, void>[] = []
  const read = () => {
    const lines = readIndexLines(path)
    readers.push(lines)
    return lines
  }

  return {
    async close() {
      for (const lines of readers) await lines.return()
      await rm(path, {force: true})
    },
    cursors: (order) => cursorsOver(read(), order),
    entries: read,
  }
}

/**
 * The two cursors of {@link PreviousIndex.cursors} over `lines`. `kept` says how many entries are
 * held between them, which the provider's read-ahead bounds.
 */
export function cursorsOver(
  lines: AsyncIterator<IndexEntry, void>,
  order: EntryOrder,
): {ahead: IndexCursor; current: IndexCursor; kept: () => number} {
  const reading = new SharedReading(lines)
  const current = new Cursor(reading, order)
  const ahead = new Cursor(reading, order)
  return {
    ahead: {seek: (target) => ahead.seek(target, current.position)},
    current: {
      async seek(target) {
        const found = await current.seek(target)
        reading.dropBefore(current.position)
        return found
      },
    },
    kept: () => reading.keptCount,
  }
}

/** One reading of the index, for cursors at different places in it: keeps what the last of them has not passed. */
class SharedReading {
  private done = false
  private first = 0
  /** The entries read and not yet dropped, from position `first` on. */
  private readonly kept: IndexEntry[] = []

  constructor(private readonly lines: AsyncIterator<IndexEntry, void>) {}

  /** How many entries are kept: those between the cursors. */
  get keptCount(): number {
    return this.kept.length
  }

  /** The entry at `position` (0 is the first line after the header), or undefined past the end. */
  async at(position: number): Promise<IndexEntry | undefined> {
    while (position - this.first >= this.kept.length) {
      if (this.done) return undefined
      const next = await this.lines.next()
      if (next.done) {
        this.done = true
        return undefined
      }

      this.kept.push(next.value)
    }

    return this.kept[position - this.first]
  }

  /** Forgets the entries before `position`, which no cursor will ask for again. */
  dropBefore(position: number): void {
    const count = Math.min(position - this.first, this.kept.length)
    if (count <= 0) return
    this.kept.splice(0, count)
    this.first += count
  }
}

/** A cursor over a shared reading: its position only moves forward. */
class Cursor {
  position = 0

  constructor(
    private readonly reading: SharedReading,
    private readonly order: EntryOrder,
  ) {}

  /** Seeks `target`, from no earlier than `from` (the other cursor's place, for one that runs ahead). */
  async seek(target: {path: string; type: string}, from = 0): Promise<IndexEntry | undefined> {
    this.position = Math.max(this.position, from)
    for (;;) {
      const entry = await this.reading.at(this.position)
      if (entry === undefined) return undefined
      const place = this.order(entry, target)
      if (place === 0) return entry
      if (place > 0) return undefined
      this.position++
    }
  }
}
