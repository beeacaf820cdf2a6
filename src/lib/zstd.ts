/* eslint-disable camelcase, n/no-unsupported-features/node-builtins -- node:zlib's zstd names, used only where the running Node.js has them (zstdImplementations) */
import {accessSync, constants} from 'node:fs'
import {delimiter, join} from 'node:path'
import {Duplex} from 'node:stream'
import zlib from 'node:zlib'

import {BackupError} from '../errors.js'
import {through} from './process.js'

/**
 * zstd as a stream stage, writing and reading standard zstd frames (RFC 8878) with a content
 * checksum: what `zstd -d` reads, and what it writes is what these read.
 *
 * Two implementations, chosen by measuring `create` of a 282 MiB tree of packs on Node.js 22:
 * - the zstd program as a pipe stage, where it is on PATH: 2.95 s and 167 MiB peak RSS. It compresses
 *   in a process of its own, on the second core, and its memory is its own;
 * - node:zlib's zstd (Node.js 22.15 and later), in the thread pool: 3.28 s and 205 MiB. It is faster in
 *   isolation (no copies through pipes), but each compression context's native memory stays in the
 *   thread pool's malloc arenas, about 3 MiB a pack, which breaks the 150 MB memory budget.
 * So the program comes first, and node:zlib serves where the program is missing.
 */

/** node:zlib's zstd API (Node.js 22.15 and later), which the types of the oldest supported Node.js lack. */
interface ZlibZstd {
  constants: {ZSTD_c_checksumFlag: number; ZSTD_c_compressionLevel: number}
  createZstdCompress?(options: {chunkSize: number; params: Record<number, number>}): Duplex
  createZstdDecompress?(options: {chunkSize: number}): Duplex
}
const zlibZstd = zlib as unknown as ZlibZstd

export type ZstdImplementation = 'node:zlib' | 'zstd program'

/** Every implementation this process has: the program when it is on PATH, node:zlib's when Node.js has it. */
export function zstdImplementations(): ZstdImplementation[] {
  return [
    ...(programOnPath() ? (['zstd program'] as const) : []),
    ...(typeof zlibZstd.createZstdCompress === 'function' ? (['node:zlib'] as const) : []),
  ]
}

/** The one to use (see above), or undefined when there is none: then writers store data as it is. */
export function zstdImplementation(): undefined | ZstdImplementation {
  return zstdImplementations()[0]
}

/** Whether `zstd` is on PATH, by the PATH it was looked up on: a host may run commands with different ones. */
const onPath = new Map<string, boolean>()

/** Whether `zstd` is on PATH, looked up once per PATH without starting it. */
function programOnPath(): boolean {
  const path = process.env.PATH ?? ''
  const known = onPath.get(path)
  if (known !== undefined) return known
  const found = path.split(delimiter).some((folder) => {
    try {
      accessSync(join(folder || '.', 'zstd'), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  onPath.set(path, found)
  return found
}

/**
 * Whether this process can write zstd. Writers that can do without compression (packs, SQLite
 * snapshots) store data as it is otherwise; readers need zstd only for compressed data.
 */
export function canCompress(): boolean {
  return zstdImplementation() !== undefined
}

/**
 * The error for a machine that must decompress `what` (say, "packs") and cannot: it says what to
 * install. Not the data's fault, so not an integrity failure.
 */
export function cannotDecompress(what: string): BackupError {
  return new BackupError(
    'SOURCE_UNAVAILABLE',
    `This backup has ${what} compressed with zstd, and this machine cannot decompress them: the zstd program is not on PATH, and this Node.js has no zstd of its own.`,
    {suggestion: 'Install zstd (apt-get install zstd), or run the command with Node.js 22.15 or later.'},
  )
}

/** The first four bytes of every zstd frame. */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

/** Large enough that a chunk costs one trip to the thread pool, not dozens. */
const CHUNK_BYTES = 256 * 1024

export function zstdCompressor(level: number, implementation = zstdImplementation() ?? 'zstd program'): Duplex {
  if (implementation === 'zstd program') return through('zstd', ['-q', '-c', `-${level}`, '-T1', '--check'])
  const {ZSTD_c_checksumFlag, ZSTD_c_compressionLevel} = zlibZstd.constants
  return zlibZstd.createZstdCompress!({
    chunkSize: CHUNK_BYTES,
    params: {[ZSTD_c_checksumFlag]: 1, [ZSTD_c_compressionLevel]: level},
  })
}

/**
 * node:zlib's decompressor reads one frame and ends quietly on a truncated one: what it returns is
 * always checked by its reader (the plaintext's SHA-256 and size in the manifest, a pack's blob ids
 * and tar end), and the ciphertext around it is authenticated by age, so neither can pass unnoticed.
 */
export function zstdDecompressor(implementation = zstdImplementation() ?? 'zstd program'): Duplex {
  if (implementation === 'zstd program') return through('zstd', ['-d', '-q', '-c'])
  return zlibZstd.createZstdDecompress!({chunkSize: CHUNK_BYTES})
}

/** True for the errors a decompressor raises on data that is not valid zstd (node:zlib's; the program's are ProcessErrors). */
export function isZstdDataError(error: unknown): boolean {
  const {code} = error as {code?: unknown}
  return typeof code === 'string' && code.startsWith('ZSTD_error')
}
