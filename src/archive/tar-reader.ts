import {Readable} from 'node:stream'

import {giveBack} from '../lib/buffer-loan.js'
import {decodeName} from '../lib/byte-names.js'

/** One member of a tar archive, as {@link readTar} yields it. */
export interface TarMember {
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
  /** A symlink's or hard link's target, in the string form of byte-names.ts. */
  linkTarget?: string
  mode: number
  mtime: Date
  /** The member's name, byte for byte, in the string form of byte-names.ts (folders end in `/`). */
  path: string
  /** node-tar's name for the member type (`File`, `Link`, `CharacterDevice`, …), for messages. */
  rawType: string
  size: number
  type: 'directory' | 'file' | 'other' | 'symlink'
}

const BLOCK = 512

type PaxRecords = Partial<Record<'linkpath' | 'mtime' | 'path' | 'size', Buffer>>

/** No records: never changed, since applyExtended makes a new object for every change. */
const NO_RECORDS: Readonly<PaxRecords> = Object.freeze({})

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
    const extended: ExtendedHeaders = {global: NO_RECORDS, local: NO_RECORDS}
    for (;;) {
      // Most headers are in the chunk at hand: taken without a promise, as are most paddings below.
      const block = input.readPending(BLOCK) ?? (await input.read(BLOCK))
      if (block.length < BLOCK) throw truncated('the archive ends before its end-of-archive blocks')
      if (isZero(block)) {
        await input.expectZerosToEnd()
        break
      }

      const header = parseHeader(block)
      if (header.typeFlag === 'x' || header.typeFlag === 'g' || header.typeFlag === 'L' || header.typeFlag === 'K') {
        const data = await input.readExactly(header.size, () =>
          truncated(`the archive ends inside a ${header.rawType}`),
        )
        await input.skip(padding(header.size))
        applyExtended(extended, header.typeFlag, data)
        continue
      }

      const member = memberOf(input, header, extended)
      extended.local = NO_RECORDS
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

/** The member a header (and the extended records in force) describes. */
function memberOf(input: ChunkInput, header: Header, extended: ExtendedHeaders): Member {
  // Most members have no records: no object is made for them.
  const records =
    extended.local === NO_RECORDS
      ? extended.global
      : extended.global === NO_RECORDS
        ? extended.local
        : {...extended.global, ...extended.local}
  const size = records.size === undefined ? header.size : numberRecord('size', records.size)
  const mtime = records.mtime === undefined ? header.mtime : new Date(numberRecord('mtime', records.mtime, true) * 1000)
  const linkBytes = records.linkpath ?? header.linkpath
  const hasBody = header.typeFlag !== '1' && header.typeFlag !== '2' && header.typeFlag !== '5'
  return new Member(input, hasBody ? size : 0, decodeName(records.path ?? header.path), {
    linkTarget: linkBytes.length > 0 ? decodeName(linkBytes) : undefined,
    mode: header.mode,
    mtime,
    rawType: header.rawType,
    type: typeOf(header.typeFlag),
  })
}

/** The pax records and GNU long names in force: global ones until replaced, local ones for the next member. */
interface ExtendedHeaders {
  global: PaxRecords
  local: PaxRecords
}

function applyExtended(extended: ExtendedHeaders, typeFlag: 'g' | 'K' | 'L' | 'x', data: Buffer): void {
  switch (typeFlag) {
    case 'g': {
      extended.global = {...extended.global, ...parsePax(data)}
      break
    }

    case 'K': {
      extended.local = {...extended.local, linkpath: untilNul(data)}
      break
    }

    case 'L': {
      extended.local = {...extended.local, path: untilNul(data)}
      break
    }

    case 'x': {
      extended.local = {...extended.local, ...parsePax(data)}
      break
    }
  }
}

interface Header {
  linkpath: Buffer
  mode: number
  mtime: Date
  path: Buffer
  rawType: string
  size: number
  typeFlag: string
}

function parseHeader(block: Buffer): Header {
  const stored = parseNumber(block, 148, 8)
  let unsigned = 8 * 0x20
  let signed = 8 * 0x20
  for (let index = 0; index < BLOCK; index++) {
    if (index >= 148 && index < 156) continue
    unsigned += block[index]
    signed += block[index] > 127 ? block[index] - 256 : block[index]
  }

  if (stored !== unsigned && stored !== signed) {
    throw new Error('the archive is damaged: a header fails its checksum (not a tar archive, or corrupted)')
  }

  const typeFlag = block[156] === 0 ? '\0' : String.fromCodePoint(block[156])
  // Views of the block, not copies: readTar decodes the names before the block can be given back.
  const name = nulTerminated(block, 0, 100)
  const prefix = block.compare(USTAR, 0, USTAR.length, 257, 262) === 0 ? nulTerminated(block, 345, 500) : undefined
  return {
    linkpath: nulTerminated(block, 157, 257),
    mode: parseNumber(block, 100, 8),
    mtime: new Date(parseNumber(block, 136, 12) * 1000),
    path: prefix !== undefined && prefix.length > 0 ? Buffer.concat([prefix, SLASH, name]) : name,
    rawType: TYPE_NAMES[typeFlag] ?? `unknown type ${JSON.stringify(typeFlag)}`,
    size: parseNumber(block, 124, 12),
    typeFlag,
  }
}

/**
 * An octal field (leading spaces, digits, then spaces or NULs), or a base-256 one (first byte's high
 * bit set). Read from the bytes as they are: four fields a member, so no text is made of them.
 */
function parseNumber(block: Buffer, offset: number, length: number): number {
  const end = offset + length
  if (block[offset] >= 0x80) {
    if (block[offset] !== 0x80) throw new Error('the archive is damaged: a header holds a negative number')
    let value = 0
    for (let index = offset + 1; index < end; index++) value = value * 256 + block[index]
    if (!Number.isSafeInteger(value)) throw new Error('the archive is damaged: a header number is too large')
    return value
  }

  let index = offset
  while (index < end && block[index] === SPACE) index++
  let value = 0
  let digits = 0
  for (; index < end && block[index] >= DIGIT_0 && block[index] <= DIGIT_7; index++, digits++) {
    value = value * 8 + block[index] - DIGIT_0
  }

  for (; index < end; index++) {
    if (block[index] !== SPACE && block[index] !== 0) {
      throw new Error('the archive is damaged: a header field is not a number')
    }
  }

  // Twelve octal digits are at most 2^36: always exact. Padding alone (no digits) reads as 0.
  return digits === 0 ? 0 : value
}

const SPACE = 0x20
const DIGIT_0 = 0x30
const DIGIT_7 = 0x37

/** Pax records, `LENGTH KEY=VALUE\n` each; values stay bytes. */
function parsePax(data: Buffer): PaxRecords {
  const records: PaxRecords = {}
  let offset = 0
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset)
    const length = space === -1 ? Number.NaN : Number(data.toString('latin1', offset, space))
    if (!Number.isSafeInteger(length) || length <= space - offset || offset + length > data.length) {
      throw new Error('the archive is damaged: a pax extended header is malformed')
    }

    const record = data.subarray(space + 1, offset + length - 1)
    if (data[offset + length - 1] !== 0x0a) throw new Error('the archive is damaged: a pax record is malformed')
    const equals = record.indexOf(0x3d)
    if (equals === -1) throw new Error('the archive is damaged: a pax record has no "="')
    const key = record.toString('utf8', 0, equals)
    // A copy: a global record outlives the chunk it came in, which may be given back.
    if (key === 'path' || key === 'linkpath' || key === 'size' || key === 'mtime')
      records[key] = Buffer.from(record.subarray(equals + 1))
    offset += length
  }

  return records
}

function numberRecord(key: string, value: Buffer, fraction = false): number {
  const text = value.toString('latin1')
  const valid = fraction ? /^-?\d+(\.\d+)?$/ : /^\d+$/
  const number = Number(text)
  if (!valid.test(text) || !Number.isFinite(number) || (!fraction && !Number.isSafeInteger(number))) {
    throw new Error(`the archive is damaged: its pax "${key}" is not a number`)
  }

  return number
}

/** A copy of the bytes before the first NUL: a GNU long name outlives the chunk it came in. */
function untilNul(bytes: Buffer): Buffer {
  const end = bytes.indexOf(0)
  return Buffer.from(end === -1 ? bytes : bytes.subarray(0, end))
}

/** The bytes of block[start, end) before the first NUL, as a view. */
function nulTerminated(block: Buffer, start: number, end: number): Buffer {
  const nul = block.indexOf(0, start)
  return block.subarray(start, nul === -1 || nul > end ? end : nul)
}

const USTAR = Buffer.from('ustar', 'latin1')
const SLASH = Buffer.from('/')

function isZero(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false
  return true
}

function padding(size: number): number {
  const remainder = size % BLOCK
  return remainder === 0 ? 0 : BLOCK - remainder
}

function truncated(what: string): Error {
  return new Error(`the archive is truncated: ${what}`)
}

/** node-tar's names for the type flags, which messages and callers use. */
const TYPE_NAMES: Record<string, string> = {
  '\0': 'OldFile',
  '0': 'File',
  '1': 'Link',
  '2': 'SymbolicLink',
  '3': 'CharacterDevice',
  '4': 'BlockDevice',
  '5': 'Directory',
  '6': 'FIFO',
  '7': 'ContiguousFile',
  g: 'GlobalExtendedHeader',
  K: 'NextFileHasLongLinkpath',
  L: 'NextFileHasLongPath',
  x: 'ExtendedHeader',
}

function typeOf(typeFlag: string): TarMember['type'] {
  if (typeFlag === '0' || typeFlag === '\0' || typeFlag === '7') return 'file'
  if (typeFlag === '5') return 'directory'
  if (typeFlag === '2') return 'symlink'
  return 'other'
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
  readonly rawType: string
  readonly type: TarMember['type']
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
    readonly size: number,
    readonly path: string,
    fields: Pick<TarMember, 'linkTarget' | 'mode' | 'mtime' | 'rawType' | 'type'>,
  ) {
    this.linkTarget = fields.linkTarget
    this.mode = fields.mode
    this.mtime = fields.mtime
    this.rawType = fields.rawType
    this.type = fields.type
    this.unread = size
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
