import {Readable} from 'node:stream'

import {giveBack} from '../lib/buffer-loan.js'
import {
  applyExtended,
  TAR_BLOCK as BLOCK,
  describeMember,
  endLocalRecords,
  isExtendedHeader,
  isZero,
  MemberDescription,
  noExtendedHeaders,
  padding,
  parseHeader,
  TarEntryType,
} from './tar-header-parse.js'

/** One member of a tar archive, as {@link readTar} yields it. */
export interface TarMember extends MemberDescription {
  /** The member's contents. Read it or leave it; the reader skips what is left when asked for the next member. */
  readonly body: Readable
  /**
   * The member's contents whole, in a buffer of its own: for a small member, instead of `body`, which
   * costs a stream a member. Use one of `body`, `contents` and `eachChunk`.
   */
  contents(): Promise<Buffer>
  /**
   * Passes the member's contents to `take` in the chunks the archive holds them in, for a consumer that
   * only hashes or copies them: without a stream, and at once (undefined) when the chunk at hand holds
   * them all, as it does for most small members; else a promise, which the consumer awaits before it
   * asks for the next member. The chunks are the consumer's as those of `body` are. Use one of `body`,
   * `contents` and `eachChunk`.
   */
  eachChunk(take: (chunk: Buffer) => void): Promise<void> | undefined
}

export interface ReadTarOptions {
  /**
   * The consumer keeps no view of a member's body once it asks for the next member: it hashed,
   * copied or wrote every chunk. The reader then gives back (buffer-loan.ts) each source chunk that it
   * split between members, once the member that used its last part is done. Without this, a chunk
   * that holds many small members goes to no stage whole, so nothing ever gives it back.
   */
  keepsNoBody?: boolean
}

/**
 * Reads a tar stream member by member. A damaged or truncated archive is an error, never a shorter list:
 * every header's checksum is checked, a member's body must have all its bytes, and the archive must
 * end with its end-of-archive blocks, after which only zeros may follow.
 *
 * Names are kept byte for byte (ustar name and prefix, pax `path`/`linkpath`, GNU long names), since a
 * file name need not be UTF-8. The whole source is always read, to its end, before the generator
 * finishes: a source that authenticates at its end (age) has then been authenticated. A consumer that
 * stops early (break, or an error of its own) has the source destroyed, and nothing is left running
 * that could fail later with nobody listening. Memory stays flat: nothing is read ahead of the consumer.
 *
 * @yields each member in archive order
 */
export async function* readTar(source: Readable, options: ReadTarOptions = {}): AsyncGenerator<TarMember> {
  const input = new ChunkInput(source, options.keepsNoBody === true)
  let completed = false
  try {
    const extended = noExtendedHeaders()
    for (;;) {
      // Most headers are in the chunk at hand: taken without a promise, as are most paddings below.
      const block = input.readPending(BLOCK) ?? (await input.read(BLOCK))
      if (block.length < BLOCK) throw truncated('the archive ends before its end-of-archive blocks')
      if (isZero(block)) {
        await input.expectZerosToEnd()
        break
      }

      const header = parseHeader(block)
      if (isExtendedHeader(header.typeFlag)) {
        const data = await input.readExactly(header.size, () =>
          truncated(`the archive ends inside a ${header.rawType}`),
        )
        await input.skip(padding(header.size))
        applyExtended(extended, header.typeFlag, data)
        continue
      }

      const description = describeMember(header, extended)
      const member = new Member(input, description)
      endLocalRecords(extended)
      yield member
      const finishing = member.finish()
      if (finishing) await finishing
      const skipping = input.skip(padding(member.size))
      if (skipping) await skipping
      input.giveBackSplit()
    }

    input.giveBackSplit()
    completed = true
  } finally {
    if (!completed) input.abandon()
  }
}

/**
 * The source, read in whatever chunks it yields, with the ability to take exactly N bytes. Only one
 * reader at a time: the member body while the consumer reads it, then the archive reader.
 */
class ChunkInput {
  private ended = false
  private readonly iterator: AsyncIterator<Buffer>
  private pending: Buffer = Buffer.alloc(0)
  /** Chunks split between members and read to their end, kept until the member using them is done. */
  private readonly spent: Buffer[] = []
  /** Whether a part of `whole` less than all of it was handed out (a header, a small member's body). */
  private split = false
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

  /** Up to `limit` bytes, as soon as any are there; undefined at the end of the source. */
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
   * Gives back the chunks that were split between members (see ReadTarOptions.keepsNoBody): called
   * where the consumer is done with every member so far, between members and at the end.
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

  /** Up to `limit` bytes of the chunk at hand; undefined when it is used up (and nothing is taken). */
  takeFromHand(limit: number): Buffer | undefined {
    return this.pending.length === 0 ? undefined : this.takePending(limit)
  }

  /** Sets the last chunk aside for giveBackSplit once it has been read to its end, if it was split. */
  private retire(): void {
    if (this.keepsNoBody && this.split && this.whole !== undefined && this.pending.length === 0) {
      this.spent.push(this.whole)
    }

    this.whole = undefined
    this.split = false
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

/** A member as readTar yields it: its body is made only when it is asked for. */
class Member implements TarMember {
  readonly linkTarget: string | undefined
  readonly mode: number
  readonly mtime: Date
  readonly path: string
  readonly rawType: string
  readonly size: number
  readonly type: TarEntryType
  /** Set once the archive reader has moved past the member: nothing more of it may be read. */
  private finished = false
  private opened: MemberBody | undefined
  /** A read by eachChunk across chunks, under way or done. */
  private reading: Promise<void> | undefined
  private taken = false
  /** What `contents` or `eachChunk` left unread, for finish() to skip. */
  private unread: number

  constructor(
    private readonly input: ChunkInput,
    description: MemberDescription,
  ) {
    this.linkTarget = description.linkTarget
    this.mode = description.mode
    this.mtime = description.mtime
    this.path = description.path
    this.rawType = description.rawType
    this.size = description.size
    this.type = description.type
    this.unread = description.size
  }

  get body(): Readable {
    if (this.taken) throw new Error(`${this.path}: its contents were already read whole`)
    this.opened ??= new MemberBody(this.input, this.size, this.path)
    return this.opened
  }

  async contents(): Promise<Buffer> {
    this.take()
    // A copy: what the input holds may be a view of a buffer that its source goes on to reuse.
    const data = Buffer.allocUnsafeSlow(this.size)
    while (this.unread > 0) {
      const chunk = await this.input.chunk(this.unread)
      if (chunk === undefined) throw truncated(`${this.path} is cut short`)
      this.unread -= chunk.copy(data, this.size - this.unread)
      giveBack(chunk)
    }

    return data
  }

  eachChunk(take: (chunk: Buffer) => void): Promise<void> | undefined {
    this.take()
    while (this.unread > 0) {
      const chunk = this.input.takeFromHand(this.unread)
      if (chunk === undefined) {
        this.reading = this.eachChunkAsRead(take)
        return this.reading
      }

      this.unread -= chunk.length
      take(chunk)
    }
  }

  /**
   * Skips whatever the consumer left of the contents: at once (undefined) when the chunk at hand holds
   * it. A consumer that did not wait for eachChunk is waited for, so that two never read at once.
   */
  finish(): Promise<void> | undefined {
    this.finished = true
    if (this.opened) return this.opened.finish()
    if (this.reading) return this.reading.then(() => this.input.skip(this.unread))
    return this.input.skip(this.unread)
  }

  private async eachChunkAsRead(take: (chunk: Buffer) => void): Promise<void> {
    while (this.unread > 0) {
      if (this.finished) throw new Error(`${this.path}: read after the archive moved on`)
      const chunk = await this.input.chunk(this.unread)
      if (chunk === undefined) throw truncated(`${this.path} is cut short`)
      this.unread -= chunk.length
      take(chunk)
    }
  }

  private take(): void {
    if (this.opened || this.taken) throw new Error(`${this.path}: its contents were already read`)
    this.taken = true
  }
}

/**
 * A member's contents: a Readable that pulls from the archive only while the consumer reads, so the
 * archive reader can take over the rest when the consumer is done, without two readers at once.
 */
class MemberBody extends Readable {
  /** Set once the archive reader takes over: the body pulls nothing more. */
  private closing = false
  private failure: Error | undefined
  private left: number
  private pulling: Promise<void> | undefined
  private wanted = false

  constructor(
    private readonly input: ChunkInput,
    size: number,
    private readonly path: string,
  ) {
    super({highWaterMark: 64 * 1024})
    this.left = size
    // Errors reach whoever reads the body through its own listeners; the archive reader raises them
    // as well, so one raised while nobody reads must not become an uncaught exception.
    this.on('error', () => {})
  }

  override _read(): void {
    if (this.closing) return
    if (this.pulling) this.wanted = true
    else this.pulling = this.pullWhileWanted()
  }

  /** Waits for a pull under way, then skips whatever the consumer left, and ends the body. */
  async finish(): Promise<void> {
    this.closing = true
    this.wanted = false
    await this.pulling
    if (this.failure) throw this.failure
    while (this.left > 0) {
      const chunk = await this.input.chunk(this.left)
      if (chunk === undefined) throw this.shortError()
      this.left -= chunk.length
      giveBack(chunk)
    }

    if (!this.destroyed) this.destroy()
  }

  /** Never rejects: a failure is kept for finish() and destroys the body with it. */
  private async pullWhileWanted(): Promise<void> {
    try {
      do {
        this.wanted = false
        if (this.destroyed || this.closing) return
        if (this.left === 0) {
          this.push(null)
          return
        }

        const chunk = await this.input.chunk(this.left)
        if (chunk === undefined) throw this.shortError()
        this.left -= chunk.length
        if (!this.destroyed) this.push(chunk)
      } while (this.wanted)
    } catch (error) {
      this.failure = error as Error
      this.destroy(this.failure)
    } finally {
      this.pulling = undefined
    }
  }

  private shortError(): Error {
    return truncated(`${this.path} is cut short`)
  }
}

function truncated(what: string): Error {
  return new Error(`the archive is truncated: ${what}`)
}
