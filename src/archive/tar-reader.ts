import {Readable} from 'node:stream'

import {giveBack} from '../lib/buffer-loan.js'
import {ChunkInput, truncated} from './tar-chunk-input.js'
import {
  applyExtended,
  TAR_BLOCK as BLOCK,
  DescribedMember,
  describeMember,
  endLocalRecords,
  isExtendedHeader,
  isZero,
  MemberDescription,
  noExtendedHeaders,
  padding,
  parseHeader,
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
   * split between members, once the member that used its last part is done (a chunk that holds many
   * small members goes to no stage whole, so no stage after the reader can give it back). Without this,
   * the reader gives back only the split chunks of which the consumer got no view: whose members it
   * read with `contents` (a copy) or skipped.
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

/** A member as readTar yields it: its body is made only when it is asked for. */
class Member extends DescribedMember implements TarMember {
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
    super(description)
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
      const chunk = await this.input.chunkForConsumer(this.unread)
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

        const chunk = await this.input.chunkForConsumer(this.left)
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
