import {rm} from 'node:fs/promises'
import {join} from 'node:path'

import {X25519Identity} from '../../archive/age-keys.js'
import {isPacked, Manifest} from '../../domain/manifest.js'
import {describeCause} from '../../errors.js'
import {tempFolderError} from '../../lib/staging.js'
import {BackupContext} from '../../services/context.js'
import {IndexEntry} from './media-index.js'
import {IndexLines, openIndexLines, readIndexFile} from './read.js'

/** How the index and the walk are sorted: the provider's order. */
export type EntryOrder = (a: {path: string; type: string}, b: {path: string; type: string}) => number

export interface IndexCursor {
  /**
   * The previous entry of this path and type's place, if any; entries must be asked for in order. The
   * answer comes at once when the index has been read that far, as it has for most files, and as a
   * promise only when a read of the index is needed: a promise or two a file, on each of two cursors,
   * were a fifth of what an unchanged backup allocated.
   */
  seek(entry: {path: string; type: string}): IndexEntry | Promise<IndexEntry | undefined> | undefined
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

const NONE: IndexCursor = {
  // eslint-disable-next-line unicorn/no-useless-undefined -- undefined is the answer: no previous entry
  seek: () => undefined,
}

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
      `warning: the index of backup ${previous.id} could not be read (${describeCause(tempFolderError(error, context.tempRoot) ?? error)}); every media file is read again.`,
    )
    return NO_PREVIOUS
  }

  const readings: IndexLines[] = []
  const open = () => {
    const lines = openIndexLines(path)
    readings.push(lines)
    return lines
  }

  return {
    async close() {
      for (const lines of readings) await lines.close()
      await rm(path, {force: true})
    },
    cursors: (order) => cursorsOver(open().batches, order),
    entries: () => open().entries,
  }
}

/**
 * The two cursors of {@link PreviousIndex.cursors} over `batches` of entries. `kept` says how many
 * entries are held between them: as many as the provider's read-ahead spans, and up to a batch more.
 */
export function cursorsOver(
  batches: AsyncIterator<IndexEntry[], void>,
  order: EntryOrder,
): {ahead: IndexCursor; current: IndexCursor; kept: () => number} {
  const reading = new SharedReading(batches)
  const current = new Cursor(reading, order)
  const ahead = new Cursor(reading, order)
  return {
    ahead: {seek: (target) => ahead.seek(target, current.position)},
    current: {
      seek(target) {
        const found = current.seek(target)
        if (!(found instanceof Promise)) {
          reading.dropBefore(current.position)
          return found
        }

        return found.then((entry) => {
          reading.dropBefore(current.position)
          return entry
        })
      },
    },
    kept: () => reading.keptCount,
  }
}

/** One reading of the index, for cursors at different places in it: keeps what the last of them has not passed. */
class SharedReading {
  ended = false
  /** The position of kept[start], the first entry not dropped. */
  private first = 0
  /** The entries read and not yet dropped: `kept[index]` is at position `first + index - start`. */
  private kept: IndexEntry[] = []
  /** Entries before it are dropped: the array is compacted once they are half of it, not at every drop. */
  private start = 0

  constructor(private readonly batches: AsyncIterator<IndexEntry[], void>) {}

  /** How many entries are kept: those between the cursors, and the rest of the last batch read. */
  get keptCount(): number {
    return this.kept.length - this.start
  }

  /** The entry at `position` (0 is the first line after the header), or undefined when not read yet. */
  at(position: number): IndexEntry | undefined {
    return this.kept[this.start + position - this.first]
  }

  /** Forgets the entries before `position`, which no cursor will ask for again. */
  dropBefore(position: number): void {
    const count = Math.min(position - this.first, this.keptCount)
    if (count <= 0) return
    this.start += count
    this.first += count
    if (this.start * 2 >= this.kept.length) {
      this.kept = this.kept.slice(this.start)
      this.start = 0
    }
  }

  /** Reads the next batch; false at the end of the index. */
  async readMore(): Promise<boolean> {
    if (this.ended) return false
    const next = await this.batches.next()
    if (next.done) {
      this.ended = true
      return false
    }

    for (const entry of next.value) this.kept.push(entry)
    return true
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
  seek(target: {path: string; type: string}, from = 0): IndexEntry | Promise<IndexEntry | undefined> | undefined {
    this.position = Math.max(this.position, from)
    for (;;) {
      const entry = this.reading.at(this.position)
      if (entry === undefined) {
        if (this.reading.ended) return undefined
        return this.readThenSeek(target)
      }

      const place = this.order(entry, target)
      if (place === 0) return entry
      if (place > 0) return undefined
      this.position++
    }
  }

  private async readThenSeek(target: {path: string; type: string}): Promise<IndexEntry | undefined> {
    // Two cursors may wait on reads at once (the provider's read-ahead, the walk): each reads a batch,
    // in turn, and a batch is never lost, only read sooner than asked for.
    while (this.reading.at(this.position) === undefined) {
      if (!(await this.reading.readMore())) return undefined
    }

    return this.seek(target)
  }
}
