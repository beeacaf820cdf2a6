import {decodeName} from '../lib/byte-names.js'

/**
 * A tar header block and the extended records before it (pax, GNU long names), decoded from the
 * bytes: what a member is. Reading the archive, with its members' bodies, is tar-reader.ts's job;
 * writing headers, tar-header.ts's.
 */

/** The size of a header, and the unit bodies are padded to. */
export const TAR_BLOCK = 512

/** node-tar's member types, folded into the four that callers tell apart. */
export type TarEntryType = 'directory' | 'file' | 'other' | 'symlink'

type PaxRecords = Partial<Record<'linkpath' | 'mtime' | 'path' | 'size', Buffer>>

/** No records: never changed, since applyExtended makes a new object for every change. */
const NO_RECORDS: Readonly<PaxRecords> = Object.freeze({})

/** The pax records and GNU long names in force: global ones until replaced, local ones for the next member. */
export interface ExtendedHeaders {
  global: PaxRecords
  local: PaxRecords
}

/** No records in force: an archive's start. */
export function noExtendedHeaders(): ExtendedHeaders {
  return {global: NO_RECORDS, local: NO_RECORDS}
}

/** After a member: its local records end with it, the global ones stay. */
export function endLocalRecords(extended: ExtendedHeaders): void {
  extended.local = NO_RECORDS
}

/** Whether a header is an extended record for the members after it, rather than a member. */
export function isExtendedHeader(typeFlag: string): typeFlag is 'g' | 'K' | 'L' | 'x' {
  return typeFlag === 'x' || typeFlag === 'g' || typeFlag === 'L' || typeFlag === 'K'
}

/** What a member is, from its header and the extended records in force; its body is the reader's. */
export interface MemberDescription {
  /** A symlink's or hard link's target, in the string form of byte-names.ts. */
  linkTarget?: string
  mode: number
  mtime: Date
  /** The member's name, byte for byte, in the string form of byte-names.ts (folders end in `/`). */
  path: string
  /** node-tar's name for the member type (`File`, `Link`, `CharacterDevice`, …), for messages. */
  rawType: string
  /** The bytes of its body that follow the header: none for links and folders, whatever their size says. */
  size: number
  type: TarEntryType
}

/**
 * A member's description as fields of its own, for the classes of members to extend (an archive's, a
 * packed backup's): one object a member, whose shape V8 knows, and no closures of its own.
 */
export abstract class DescribedMember implements MemberDescription {
  readonly linkTarget: string | undefined
  readonly mode: number
  readonly mtime: Date
  readonly path: string
  readonly rawType: string
  readonly size: number
  readonly type: TarEntryType

  constructor(description: MemberDescription) {
    this.linkTarget = description.linkTarget
    this.mode = description.mode
    this.mtime = description.mtime
    this.path = description.path
    this.rawType = description.rawType
    this.size = description.size
    this.type = description.type
  }
}

/** The member a header (and the extended records in force) describes. */
export function describeMember(header: Header, extended: ExtendedHeaders): MemberDescription {
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
  return {
    linkTarget: linkBytes.length > 0 ? decodeName(linkBytes) : undefined,
    mode: header.mode,
    mtime,
    path: decodeName(records.path ?? header.path),
    rawType: header.rawType,
    size: hasBody ? size : 0,
    type: typeOf(header.typeFlag),
  }
}

export function applyExtended(extended: ExtendedHeaders, typeFlag: 'g' | 'K' | 'L' | 'x', data: Buffer): void {
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

export interface Header {
  linkpath: Buffer
  mode: number
  mtime: Date
  path: Buffer
  rawType: string
  size: number
  typeFlag: string
}

export function parseHeader(block: Buffer): Header {
  const stored = parseNumber(block, 148, 8)
  let unsigned = 8 * 0x20
  let signed = 8 * 0x20
  for (let index = 0; index < TAR_BLOCK; index++) {
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

export function isZero(block: Buffer): boolean {
  for (const byte of block) if (byte !== 0) return false
  return true
}

export function padding(size: number): number {
  const remainder = size % TAR_BLOCK
  return remainder === 0 ? 0 : TAR_BLOCK - remainder
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

function typeOf(typeFlag: string): TarEntryType {
  if (typeFlag === '0' || typeFlag === '\0' || typeFlag === '7') return 'file'
  if (typeFlag === '5') return 'directory'
  if (typeFlag === '2') return 'symlink'
  return 'other'
}
