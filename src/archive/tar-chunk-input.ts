import {Readable} from 'node:stream'

import {giveBack} from '../lib/buffer-loan.js'
import {isZero} from './tar-header-parse.js'

/**
 * The source, read in whatever chunks it yields, with the ability to take exactly N bytes. Only one
 * reader at a time: the member body while the consumer reads it, then the archive reader.
 */
export class ChunkInput {
  private ended = false
  private readonly iterator: AsyncIterator<Buffer>
  private pending: Buffer = Buffer.alloc(0)
  /** Chunks split between members and read to their end, kept until the member using them is done. */
  private readonly spent: Buffer[] = []
  /** Whether a part of `whole` less than all of it was handed out (a header, a small member's body). */
  private split = false
  /**
   * Whether a part of `whole` went to the consumer as a view of it (a body's chunk), which the consumer
   * may keep: such a chunk is given back only to a consumer that keeps no body.
   */
  private viewed = false
  /** The source's last chunk, of which `pending` is what is left. */
  private whole: Buffer | undefined

  constructor(
    private readonly source: Readable,
    private readonly keepsNoBody: boolean,
  ) {
    this.iterator = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
  }

  /** Stops reading: the source is destroyed, and an error it then raises has a listener. */
  abandon(): void {
    this.source.on('error', () => {})
    this.source.destroy()
    // The iterator's own clean-up may reject (premature close); nobody needs that error.
    this.iterator.return?.().catch(() => {})
  }

  /**
   * Up to `limit` bytes, as soon as any are there; undefined at the end of the source. For bytes the
   * reader reads itself, skips, or copies before it asks for more: `chunkForConsumer` hands them on.
   */
  async chunk(limit: number): Promise<Buffer | undefined> {
    if (this.pending.length === 0) {
      if (this.ended) return undefined
      const next = await this.iterator.next()
      if (next.done) {
        this.ended = true
        return undefined
      }

      this.retire()
      this.pending = next.value
      this.whole = next.value
    }

    return this.takePending(limit)
  }

  /** `chunk`, for a member's body: the consumer may keep what it is given. */
  async chunkForConsumer(limit: number): Promise<Buffer | undefined> {
    const chunk = await this.chunk(limit)
    if (chunk !== undefined) this.handedOut(chunk)
    return chunk
  }

  /** Reads the rest of the source, which must be zeros (end-of-archive blocks and record padding). */
  async expectZerosToEnd(): Promise<void> {
    for (;;) {
      const chunk = await this.chunk(Number.POSITIVE_INFINITY)
      if (chunk === undefined) return
      if (!isZero(chunk)) throw new Error('the archive is damaged: data follows its end-of-archive block')
      giveBack(chunk)
    }
  }

  /**
   * Gives back the chunks that were split between members: called where the consumer is done with
   * every member so far, between members and at the end. A chunk whose parts were only read here or
   * copied goes back to any consumer; one of which the consumer got a view, only to a consumer that
   * keeps no body (see ReadTarOptions.keepsNoBody).
   */
  giveBackSplit(): void {
    if (this.ended) this.retire()
    for (const chunk of this.spent) giveBack(chunk)
    this.spent.length = 0
  }

  /** Exactly `size` bytes, or fewer only at the end of the source. */
  async read(size: number): Promise<Buffer> {
    const ready = this.readPending(size)
    if (ready) return ready

    const parts: Buffer[] = []
    let total = 0
    while (total < size) {
      const chunk = await this.chunk(size - total)
      if (chunk === undefined) break
      parts.push(chunk)
      total += chunk.length
    }

    if (parts.length === 1) return parts[0]
    const joined = Buffer.concat(parts, total)
    // Copied, so read last here (a part of a split chunk is not lent whole, and stays).
    for (const part of parts) giveBack(part)
    return joined
  }

  async readExactly(size: number, short: () => Error): Promise<Buffer> {
    if (size > 16 * 1024 * 1024) throw new Error('the archive is damaged: an extended header is implausibly large')
    const data = await this.read(size)
    if (data.length < size) throw short()
    return data
  }

  /** Exactly `size` bytes if the chunk at hand holds them, else undefined (and nothing is taken). */
  readPending(size: number): Buffer | undefined {
    if (this.pending.length < size) return undefined
    const taken = this.pending.subarray(0, size)
    this.pending = this.pending.subarray(size)
    this.split = true
    return taken
  }

  /** Skips `size` bytes: at once when the chunk at hand holds them (undefined), else a promise. */
  skip(size: number): Promise<void> | undefined {
    if (this.pending.length < size) return this.skipAcrossChunks(size)
    // Skipped, so read last here: a lent chunk goes back to its stage (buffer-loan.ts).
    if (size > 0) giveBack(this.takePending(size))
  }

  /**
   * Up to `limit` bytes of the chunk at hand, for a member's body (the consumer may keep them); undefined
   * when it is used up (and nothing is taken).
   */
  takeFromHand(limit: number): Buffer | undefined {
    if (this.pending.length === 0) return undefined
    const taken = this.takePending(limit)
    this.handedOut(taken)
    return taken
  }

  /** Notes that the consumer holds `taken`: if it is a part of a chunk, the chunk may be in use. */
  private handedOut(taken: Buffer): void {
    if (taken !== this.whole) this.viewed = true
  }

  /**
   * Sets the last chunk aside for giveBackSplit once it has been read to its end, if it was split and
   * nothing of it may still be in the consumer's hands.
   */
  private retire(): void {
    const releasable = this.keepsNoBody || !this.viewed
    if (releasable && this.split && this.whole !== undefined && this.pending.length === 0) {
      this.spent.push(this.whole)
    }

    this.whole = undefined
    this.split = false
    this.viewed = false
  }

  private async skipAcrossChunks(size: number): Promise<void> {
    let left = size
    while (left > 0) {
      const chunk = await this.chunk(left)
      if (chunk === undefined) throw truncated('the archive ends inside a member')
      left -= chunk.length
      giveBack(chunk)
    }
  }

  /** Up to `limit` bytes of the chunk at hand, which must not be empty. */
  private takePending(limit: number): Buffer {
    const taken = this.pending.length <= limit ? this.pending : this.pending.subarray(0, limit)
    this.pending = this.pending.subarray(taken.length)
    // A chunk handed out whole is its taker's to give back; a part of one is the reader's (retire).
    if (taken !== this.whole) this.split = true
    return taken
  }
}

export function truncated(what: string): Error {
  return new Error(`the archive is truncated: ${what}`)
}
