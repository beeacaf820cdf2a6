import {createHash} from 'node:crypto'
import {z} from 'zod'

import {keyOfPath} from '../../providers/media/s3-key-paths.js'

/**
 * The media index of an incremental backup (docs/storage.md): one JSON line a media entry, in archive order
 * (the order a media.tar of the backup lists them), after a header line. It is stored gzipped and
 * encrypted, as media.index.gz.age: file names and content hashes are data.
 *
 * A file's content is a list of blobs, each `[blob id, pack name]`: the blob id is the SHA-256 of the
 * blob's bytes, the pack is where it is stored. A file of one blob also records its SHA-256 (the
 * blob's id); a larger file's is computed when it is read back, for MANIFEST.json. (Older indexes
 * record it for every file, and it is then checked over the whole.)
 */

export const INDEX_HEADER = {format: 'divio-media-index', version: 1} as const
/** Gzipped JSON lines: file names and hashes repeat, and the index is most of what an unchanged backup stores. */
export const INDEX_NAME = 'media.index.gz.age'
/** The same as an sh script that rebuilds the tree from extracted packs, for leaving without this tool. */
export const REBUILD_NAME = 'media.rebuild.sh.age'

/** Files are cut into blobs of this size (the last one shorter): see docs/storage.md on the choice. */
export const BLOB_BYTES = 1024 * 1024

const sha256 = z.string().regex(/^[\da-f]{64}$/)

export const indexEntrySchema = z
  .object({
    blobs: z.array(z.tuple([sha256, z.string().regex(/^[\da-f]{32}\.age$/)])).optional(),
    ctimeMs: z.number().optional(),
    /** S3 media: the object's ETag, by which an unchanged object is known without downloading it. */
    etag: z.string().optional(),
    ino: z.number().optional(),
    /** S3 media: the object's full key, for MANIFEST.json. */
    key: z.string().optional(),
    linkTarget: z.string().optional(),
    mode: z.number().int(),
    mtimeMs: z.number(),
    path: z.string().min(1),
    sha256: sha256.optional(),
    size: z.number().int().nonnegative(),
    type: z.enum(['directory', 'file', 'symlink']),
  })
  .strict()

export type IndexEntry = z.infer<typeof indexEntrySchema>

export function indexHeaderLine(): string {
  return `${JSON.stringify(INDEX_HEADER)}\n`
}

export function indexLine(entry: IndexEntry): string {
  return `${JSON.stringify(entry)}\n`
}

export class IndexFormatError extends Error {}

/** Parses one line after the header; a damaged line is an error (the index authenticated, so it is a bug). */
export function parseIndexLine(line: string): IndexEntry {
  let raw: unknown
  try {
    raw = JSON.parse(line)
  } catch (error) {
    throw new IndexFormatError(`not JSON: ${(error as Error).message}`)
  }

  // The schema only to explain a line that the quick check refuses: it runs for every file of every
  // backup, several times a create, and the quick check costs a tenth of it.
  let entry: IndexEntry
  if (looksLikeIndexEntry(raw)) {
    entry = raw
  } else {
    const parsed = indexEntrySchema.safeParse(raw)
    if (!parsed.success) throw new IndexFormatError(parsed.error.issues[0].message)
    entry = parsed.data
  }

  // An empty file needs no blob; any other file has at least one.
  if (entry.type === 'file' && (entry.blobs === undefined || (entry.blobs.length === 0 && entry.size > 0))) {
    throw new IndexFormatError(`file ${entry.path} has no content`)
  }

  return entry
}

const ENTRY_KEYS = new Set(Object.keys(indexEntrySchema.shape))
const HEX64 = /^[\da-f]{64}$/
const PACK_NAME = /^[\da-f]{32}\.age$/

/** Exactly what indexEntrySchema accepts, checked by hand (a property test holds them equal). */
export function looksLikeIndexEntry(raw: unknown): raw is IndexEntry {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false
  const entry = raw as Record<string, unknown>
  for (const key in entry) if (!ENTRY_KEYS.has(key)) return false
  return hasRequiredFields(entry) && hasValidOptionalFields(entry) && hasValidBlobs(entry.blobs)
}

function hasRequiredFields(entry: Record<string, unknown>): boolean {
  return (
    Number.isInteger(entry.mode) &&
    Number.isFinite(entry.mtimeMs) &&
    typeof entry.path === 'string' &&
    entry.path.length > 0 &&
    Number.isInteger(entry.size) &&
    (entry.size as number) >= 0 &&
    (entry.type === 'directory' || entry.type === 'file' || entry.type === 'symlink')
  )
}

function hasValidOptionalFields(entry: Record<string, unknown>): boolean {
  const optional = (key: string, type: string) => entry[key] === undefined || typeof entry[key] === type
  const finite = (key: string) => entry[key] === undefined || Number.isFinite(entry[key])
  return (
    finite('ctimeMs') &&
    optional('etag', 'string') &&
    finite('ino') &&
    optional('key', 'string') &&
    optional('linkTarget', 'string') &&
    (entry.sha256 === undefined || (typeof entry.sha256 === 'string' && HEX64.test(entry.sha256)))
  )
}

function hasValidBlobs(blobs: unknown): boolean {
  return (
    blobs === undefined ||
    (Array.isArray(blobs) &&
      blobs.every(
        (blob: unknown) =>
          Array.isArray(blob) &&
          blob.length === 2 &&
          typeof blob[0] === 'string' &&
          HEX64.test(blob[0]) &&
          typeof blob[1] === 'string' &&
          PACK_NAME.test(blob[1]),
      ))
  )
}

export function checkIndexHeader(line: string): void {
  let header: unknown
  try {
    header = JSON.parse(line)
  } catch {
    header = undefined
  }

  const {format, version} = (header ?? {}) as {format?: unknown; version?: unknown}
  if (format !== INDEX_HEADER.format || version !== INDEX_HEADER.version) {
    throw new IndexFormatError('not a divio media index (version 1)')
  }
}

/**
 * True when a file can keep the previous backup's blobs without being read (the caller matches paths).
 *
 * - A file in a folder: same type, size, modification time, inode and change time. The change time
 *   moves on any write or metadata change, and cannot be set back by the app, so an edit that restores
 *   the mtime is still seen. A file read too close to its last change was recorded without a change
 *   time (changeTimeSettled), and is read again.
 * - An S3 object: same size and ETag. S3 gives a rewritten object a new ETag (for a multipart upload,
 *   too: it is computed over the parts' digests).
 */
export function isUnchanged(previous: IndexEntry, current: Omit<IndexEntry, 'blobs' | 'sha256'>): boolean {
  if (previous.type !== 'file' || current.type !== 'file' || previous.size !== current.size) return false
  if (current.etag !== undefined) return previous.etag === current.etag
  return (
    previous.etag === undefined &&
    previous.mtimeMs === current.mtimeMs &&
    previous.ino !== undefined &&
    previous.ino === current.ino &&
    previous.ctimeMs !== undefined &&
    previous.ctimeMs === current.ctimeMs
  )
}

/**
 * How long before a walk starts a file's change time must lie to be trusted next time (the rule of
 * changeTimeSettled). File times come from the kernel's coarse clock (a tick of up to 10 ms on Linux,
 * 15.6 ms on Windows) and are cut to the file system's granularity (a whole second on some, two on
 * FAT); 3 s covers both, and a file server's clock a little apart from this one.
 */
export const CHANGE_TIME_WINDOW_MS = 3000

/**
 * Whether a file read in a walk that started at `walkStartedMs` (the real clock) may be known by its
 * change time next time. A file written again within the tick of its change time keeps that change
 * time, and a write at the same size then keeps everything isUnchanged compares: git calls such
 * entries racily clean. A change time well before the walk's start cannot be repeated by a write after
 * it, since every read comes after the start; a later one, or one too close to call, is not recorded,
 * so that the next backup reads the file again.
 */
export function changeTimeSettled(ctimeMs: number, walkStartedMs: number): boolean {
  return ctimeMs < walkStartedMs - CHANGE_TIME_WINDOW_MS
}

/**
 * The order of a media walk: depth first, each folder's names sorted by code unit, a folder right
 * before its contents. Both the walk and the index are in this order, so the previous index can be
 * merged with the walk as two sorted streams, in constant memory.
 */
export function walkOrder(a: string, b: string): number {
  // The order of the paths' segments, compared without splitting them (this runs for every file of
  // every backup, several times): where two paths first differ, a `/` ends the one segment while the
  // other goes on, so it sorts first; elsewhere, code units compare as the segments' strings do.
  const length = Math.min(a.length, b.length)
  for (let index = 0; index < length; index++) {
    // Code units, not code points: the walk sorts names as strings, by UTF-16 code unit.
    // eslint-disable-next-line unicorn/prefer-code-point
    const left = a.charCodeAt(index)
    // eslint-disable-next-line unicorn/prefer-code-point
    const right = b.charCodeAt(index)
    if (left === right) continue
    if (left === SLASH) return -1
    if (right === SLASH) return 1
    return left < right ? -1 : 1
  }

  return a.length - b.length
}

const SLASH = 0x2f

/**
 * The order of an S3 listing: by key, as UTF-8 bytes (a folder marker's key ends in `/`). An S3 media
 * index is in this order, since that is the order the bucket is listed in.
 */
export function keyOrder(a: {path: string; type: string}, b: {path: string; type: string}): number {
  return Buffer.compare(Buffer.from(keyOf(a)), Buffer.from(keyOf(b)))
}

/** The S3 key an entry stands for, which orders it in the listing (an encoded key's, too: s3-key-paths.ts). */
function keyOf(entry: {path: string; type: string}): string {
  return keyOfPath(entry.path, entry.type) ?? `${entry.path}/`
}

/**
 * A blob id as a memory key: its first 16 bytes, as a flat one-byte string (a quarter of the hex). Two
 * blobs that share them are as unlikely as a SHA-256 collision; where a key could still mislead, the
 * full id is what gets recorded and checked.
 */
export function blobKey(id: string): string {
  return Buffer.from(id.slice(0, 32), 'hex').toString('latin1')
}

/**
 * A file's content as a key of CheckedContents: the first 16 bytes of a SHA-256 of its size, its
 * recorded SHA-256 (if any) and its blobs, each with the pack the index places it in. Everything a
 * read of the file checks, and no more: two entries with one key read the same blobs from the same
 * packs, and pass or fail the same checks, whatever their paths.
 */
export function contentKey(entry: IndexEntry): Buffer {
  let text = `${entry.size} ${entry.sha256 ?? '-'}`
  for (const [blob, pack] of entry.blobs ?? []) text += ` ${blob} ${pack}`
  return createHash('sha256').update(text).digest().subarray(0, 16)
}

/** The size of a file's blob at `position`: BLOB_BYTES, the last one shorter. */
export function blobSize(fileSize: number, position: number): number {
  return Math.min(BLOB_BYTES, fileSize - position * BLOB_BYTES)
}
