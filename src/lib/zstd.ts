/* eslint-disable camelcase, n/no-unsupported-features/node-builtins -- node:zlib's zstd names, used only where the running Node.js has them (zstdImplementation) */
import {accessSync, constants} from 'node:fs'
import {delimiter, join} from 'node:path'
import {Duplex} from 'node:stream'
import zlib from 'node:zlib'

import {through} from './process.js'

/**
 * zstd as a stream stage, writing and reading standard zstd frames (RFC 8878) with a content
 * checksum: what `zstd -d` reads, and what it writes is what these read.
 *
 * Node.js 22.15 and later have zstd in node:zlib; it runs in the thread pool, off the main thread, and
 * measured faster than piping through the zstd program (half the time on incompressible data, a
 * third less on text, with no copies through pipes). On older Node.js (20, past its end of life) the
 * zstd program is the stage instead, as a separate process.
 */

/** node:zlib's zstd API (Node.js 22.15 and later), which the types of the oldest supported Node.js lack. */
interface ZlibZstd {
  constants: {ZSTD_c_checksumFlag: number; ZSTD_c_compressionLevel: number}
  createZstdCompress?(options: {chunkSize: number; params: Record<number, number>}): Duplex
  createZstdDecompress?(options: {chunkSize: number}): Duplex
}
const zlibZstd = zlib as unknown as ZlibZstd

/** What the running Node.js offers: node:zlib's zstd (22.15 and later), else the zstd program. */
export const zstdImplementation: 'node:zlib' | 'zstd program' =
  typeof zlibZstd.createZstdCompress === 'function' ? 'node:zlib' : 'zstd program'

let programOnPath: boolean | undefined

/**
 * Whether this process can write zstd: always on Node.js 22.15 and later; on older ones, when the zstd
 * program is on PATH (looked up once, without starting it). Writers that can do without compression
 * (packs, SQLite snapshots) store data as it is otherwise; readers need zstd only for compressed data.
 */
export function canCompress(): boolean {
  if (zstdImplementation === 'node:zlib') return true
  programOnPath ??= (process.env.PATH ?? '').split(delimiter).some((folder) => {
    try {
      accessSync(join(folder || '.', 'zstd'), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  return programOnPath
}

/** The first four bytes of every zstd frame. */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

/** Large enough that a chunk costs one trip to the thread pool, not dozens. */
const CHUNK_BYTES = 256 * 1024

export function zstdCompressor(level: number, implementation = zstdImplementation): Duplex {
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
export function zstdDecompressor(implementation = zstdImplementation): Duplex {
  if (implementation === 'zstd program') return through('zstd', ['-d', '-q', '-c'])
  return zlibZstd.createZstdDecompress!({chunkSize: CHUNK_BYTES})
}

/** True for the errors a decompressor raises on data that is not valid zstd (node:zlib's; the program's are ProcessErrors). */
export function isZstdDataError(error: unknown): boolean {
  const {code} = error as {code?: unknown}
  return typeof code === 'string' && code.startsWith('ZSTD_error')
}
