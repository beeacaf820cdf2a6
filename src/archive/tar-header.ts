import {Header, Pax} from 'tar'

/** What a media archive member's header records. */
export interface TarHeaderFields {
  linkpath?: string
  mode: number
  mtime: Date
  path: string
  size: number
  type: 'Directory' | 'File' | 'SymbolicLink'
}

const BLOCK = 512
const TYPE_FLAG = {Directory: 0x35, File: 0x30, SymbolicLink: 0x32} as const
/** Largest number a 12-byte octal field holds (8 GiB - 1); beyond it a pax record is needed. */
const MAX_OCTAL_12 = 0o777_7777_7777
/** Printable ASCII: anything else (non-ASCII, control characters) takes node-tar's general path. */
const PRINTABLE_ASCII = /^[ -~]*$/

/** A ustar header with the fields we never vary already filled in: magic, version, device numbers. */
const TEMPLATE = Buffer.alloc(BLOCK)
TEMPLATE.write('ustar\u000000', 257, 'latin1')
TEMPLATE.write('000000 \0', 329, 'latin1')
TEMPLATE.write('000000 \0', 337, 'latin1')

/**
 * Encodes the header of one member, as node-tar's Header would, byte for byte; a pax extended header
 * comes first when a field does not fit ustar (long or non-ASCII names, files of 8 GiB or more).
 *
 * A media archive has one header per file, and node-tar's general-purpose encoder costs about 12 µs
 * each, which is seconds for a million files. Headers whose fields are plain ASCII and fit are
 * therefore written here straight from a template; everything else goes through node-tar. Tests check
 * that both paths give node-tar's bytes, and that system tar reads them.
 */
export function encodeTarHeader(fields: TarHeaderFields): Buffer {
  return fitsUstar(fields) ? ustarHeader(fields) : headerWithPax(fields)
}

/** True when the fields take the fast path: a plain ustar header, written from the template. */
export function fitsUstar({linkpath = '', mtime, path, size}: TarHeaderFields): boolean {
  const seconds = Math.floor(mtime.getTime() / 1000)
  return (
    path.length < 100 &&
    linkpath.length < 100 &&
    size <= MAX_OCTAL_12 &&
    seconds >= 0 &&
    seconds <= MAX_OCTAL_12 &&
    PRINTABLE_ASCII.test(path) &&
    PRINTABLE_ASCII.test(linkpath)
  )
}

function ustarHeader({linkpath, mode, mtime, path, size, type}: TarHeaderFields): Buffer {
  const block = Buffer.allocUnsafe(BLOCK)
  TEMPLATE.copy(block)
  block.write(path, 0, 'latin1')
  block.write(octal(mode, 8), 100, 'latin1')
  block.write(octal(size, 12), 124, 'latin1')
  block.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, 'latin1')
  block[156] = TYPE_FLAG[type]
  if (linkpath !== undefined) block.write(linkpath, 157, 'latin1')
  // The checksum is the byte sum of the header with its own field read as eight spaces.
  let sum = 8 * 0x20
  for (let index = 0; index < 148; index++) sum += block[index]
  for (let index = 156; index < BLOCK; index++) sum += block[index]
  block.write(octal(sum, 8), 148, 'latin1')
  return block
}

/** node-tar's octal field: zero-padded digits, then a space and a NUL (or just a NUL when full). */
function octal(value: number, width: number): string {
  const digits = value.toString(8)
  return digits.length === width - 1 ? `${digits}\0` : `${digits.padStart(width - 2, '0')} \0`
}

function headerWithPax(fields: TarHeaderFields): Buffer {
  const header = new Header(fields)
  // encode() returns true when a field does not fit the ustar header.
  if (!header.encode()) return header.block!
  const pax = new Pax({linkpath: fields.linkpath, mtime: fields.mtime, path: fields.path, size: fields.size})
  return Buffer.concat([pax.encode(), header.block!])
}
