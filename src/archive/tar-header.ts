import {basename} from 'node:path'

import {encodeName, isUtf8Name} from '../lib/byte-names.js'

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
const TYPE_FLAG = {Directory: 0x35, ExtendedHeader: 0x78, File: 0x30, SymbolicLink: 0x32} as const
const PAX_TYPE_FLAG = TYPE_FLAG.ExtendedHeader
/** Largest number a 12-byte octal field holds (8 GiB - 1); beyond it a pax record is needed. */
const MAX_OCTAL_12 = 0o777_7777_7777
/** Printable ASCII: anything else (non-ASCII, control characters) takes one of the other paths. */
const PRINTABLE_ASCII = /^[ -~]*$/

/** A ustar header with the fields we never vary already filled in: magic, version, device numbers. */
const TEMPLATE = Buffer.alloc(BLOCK)
TEMPLATE.write('ustar\u000000', 257, 'latin1')
TEMPLATE.write('000000 \0', 329, 'latin1')
TEMPLATE.write('000000 \0', 337, 'latin1')
const ZEROS = Buffer.alloc(BLOCK)

/** node-tar, for the headers this module does not write itself (see loadTarEncoder). */
let nodeTar: typeof import('tar') | undefined

/**
 * Loads node-tar's encoder, which {@link encodeTarHeader} needs for a UTF-8 name of 100 bytes or more
 * (or a time or size beyond the octal fields); whatever builds an archive of names it does not choose
 * awaits it first (createMediaTar). It is not loaded with this module: node-tar, node:assert with it,
 * costs a thread that loads it 20-35 ms and 3-5 MiB, and restore, verify, drill and the pack writer
 * (whose members are named by their hex ids) never need it.
 */
export async function loadTarEncoder(): Promise<void> {
  nodeTar ??= await import('tar')
}

/**
 * Encodes the header of one member, as node-tar's Header would, byte for byte; a pax extended header
 * comes first when a field does not fit ustar (long or non-ASCII names, files of 8 GiB or more).
 *
 * A media archive has one header per file, and node-tar's general-purpose encoder costs 12–20 µs
 * each, which is seconds for a million files. Headers whose names fit the ustar fields (plain ASCII,
 * or UTF-8 with a pax header ahead) are therefore written here straight from a template, and so are
 * names that are not UTF-8, which node-tar cannot write; only names of 100 bytes or more go through
 * node-tar, which {@link loadTarEncoder} must have loaded. Tests check that every path gives node-tar's
 * bytes, and that system tar reads them.
 */
export function encodeTarHeader(fields: TarHeaderFields): Buffer {
  if (fitsUstar(fields)) return ustarHeader(fields, 'latin1')
  if (!isUtf8Name(fields.path) || (fields.linkpath !== undefined && !isUtf8Name(fields.linkpath))) {
    return byteNameHeader(fields)
  }

  return shortNameHeader(fields) ?? headerWithPax(fields)
}

/**
 * node-tar's bytes for names that fit the ustar fields as UTF-8 but are not printable ASCII (most
 * names of uploads in languages other than English), without node-tar's general encoder: the ustar
 * header with the names written as UTF-8, after a pax header that records them (and the time to the
 * millisecond, and the size) when either is not ASCII. Undefined for anything else (a name of 100 bytes
 * or more, which node-tar splits into the prefix field; a time or size beyond the octal fields).
 */
function shortNameHeader(fields: TarHeaderFields): Buffer | undefined {
  const {linkpath, mtime, path, size} = fields
  const seconds = Math.floor(mtime.getTime() / 1000)
  if (size > MAX_OCTAL_12 || seconds < 0 || seconds > MAX_OCTAL_12) return undefined
  const pathBytes = Buffer.byteLength(path)
  const linkBytes = linkpath === undefined ? 0 : Buffer.byteLength(linkpath)
  if (pathBytes >= 100 || linkBytes >= 100) return undefined
  const member = ustarHeader(fields, 'utf8')
  // node-tar adds the pax header only for a name that is not ASCII; control characters fit ustar.
  if (pathBytes === path.length && linkBytes === (linkpath?.length ?? 0)) return member
  // node-tar names the pax header after the member's last segment, cut to 99 UTF-16 units.
  const paxName = `PaxHeader/${basename(path)}`.slice(0, 99)
  if (Buffer.byteLength(paxName) >= 100) return undefined
  const text = (value: string) => Buffer.from(value)
  const body = Buffer.concat([
    paxRecord('path', text(path)),
    ...(linkpath === undefined ? [] : [paxRecord('linkpath', text(linkpath))]),
    paxRecord('mtime', text(String(mtime.getTime() / 1000))),
    paxRecord('size', text(String(size))),
  ])
  const paxHeader = ustarHeader({mode: 0o644, mtime, path: paxName, size: body.length, type: 'ExtendedHeader'}, 'utf8')
  const padding = (BLOCK - (body.length % BLOCK)) % BLOCK
  return Buffer.concat([paxHeader, body, ZEROS.subarray(0, padding), member])
}

/**
 * The header of a member whose name (or link target) is not UTF-8, written byte for byte (node-tar would
 * write U+FFFD instead). A name of up to 100 bytes goes into the ustar field as it is; a longer one
 * into a pax `path`/`linkpath` record holding the raw bytes, which GNU tar extracts as they are.
 */
function byteNameHeader({linkpath = '', mode, mtime, path, size, type}: TarHeaderFields): Buffer {
  const name = encodeName(path)
  const link = encodeName(linkpath)
  const seconds = Math.floor(mtime.getTime() / 1000)
  const records: Buffer[] = []
  if (name.length > 100) records.push(paxRecord('path', name))
  if (link.length > 100) records.push(paxRecord('linkpath', link))
  if (size > MAX_OCTAL_12) records.push(paxRecord('size', Buffer.from(String(size))))
  if (seconds < 0 || seconds > MAX_OCTAL_12) records.push(paxRecord('mtime', Buffer.from(String(seconds))))
  const member = rawHeader({
    link: link.subarray(0, 100),
    mode,
    name: name.subarray(0, 100),
    seconds: Math.min(Math.max(seconds, 0), MAX_OCTAL_12),
    size: Math.min(size, MAX_OCTAL_12),
    typeFlag: TYPE_FLAG[type],
  })
  if (records.length === 0) return member
  const body = Buffer.concat(records)
  const paxHeader = rawHeader({
    link: Buffer.alloc(0),
    mode: 0o644,
    name: Buffer.from('PaxHeader'),
    seconds: 0,
    size: body.length,
    typeFlag: PAX_TYPE_FLAG,
  })
  const padding = Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)
  return Buffer.concat([paxHeader, body, padding, member])
}

/** One pax record: `LENGTH key=value\n`, where LENGTH counts the whole record, itself included. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(` ${key}=`) + value.length + 1
  let length = rest + String(rest).length
  if (String(length).length !== String(rest).length) length = rest + String(length).length
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')])
}

interface RawHeaderFields {
  link: Buffer
  mode: number
  name: Buffer
  seconds: number
  size: number
  typeFlag: number
}

function rawHeader({link, mode, name, seconds, size, typeFlag}: RawHeaderFields): Buffer {
  const block = Buffer.allocUnsafe(BLOCK)
  TEMPLATE.copy(block)
  name.copy(block, 0)
  block.write(octal(mode, 8), 100, 'latin1')
  block.write(octal(size, 12), 124, 'latin1')
  block.write(octal(seconds, 12), 136, 'latin1')
  block[156] = typeFlag
  link.copy(block, 157)
  let sum = 8 * 0x20
  for (let index = 0; index < 148; index++) sum += block[index]
  for (let index = 156; index < BLOCK; index++) sum += block[index]
  block.write(octal(sum, 8), 148, 'latin1')
  return block
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

/** A ustar header from the template, its names written in `encoding` (each known to fit its field). */
function ustarHeader(
  {linkpath, mode, mtime, path, size, type}: Omit<TarHeaderFields, 'type'> & {type: keyof typeof TYPE_FLAG},
  encoding: 'latin1' | 'utf8',
): Buffer {
  const block = Buffer.allocUnsafe(BLOCK)
  TEMPLATE.copy(block)
  block.write(path, 0, encoding)
  block.write(octal(mode, 8), 100, 'latin1')
  block.write(octal(size, 12), 124, 'latin1')
  block.write(octal(Math.floor(mtime.getTime() / 1000), 12), 136, 'latin1')
  block[156] = TYPE_FLAG[type]
  if (linkpath !== undefined) block.write(linkpath, 157, encoding)
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
  if (nodeTar === undefined) throw new Error(`${fields.path}: the tar encoder is not loaded (loadTarEncoder)`)
  const {Header, Pax} = nodeTar
  const header = new Header(fields)
  // encode() returns true when a field does not fit the ustar header.
  if (!header.encode()) return header.block!
  const pax = new Pax({linkpath: fields.linkpath, mtime: fields.mtime, path: fields.path, size: fields.size})
  return Buffer.concat([pax.encode(), header.block!])
}
