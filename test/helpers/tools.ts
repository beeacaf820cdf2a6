import {execFileSync} from 'node:child_process'
import {createHash, randomFillSync} from 'node:crypto'
import {closeSync, openSync, readSync, writeSync} from 'node:fs'
import {Readable, Transform, Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

/** True when an executable is on PATH. */
export function hasTool(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

/**
 * Skips the calling suite, with one line naming the Debian package, when a tool is missing.
 * `.ci/run` installs every such package, so CI never skips.
 */
export function requireTool(context: Mocha.Context, name: string, debianPackage: string): void {
  if (!hasTool(name)) {
    console.log(`      skipped: \`${name}\` is not installed (apt-get install ${debianPackage})`)
    context.skip()
  }
}

export async function collect(source: NodeJS.ReadableStream | Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of source) chunks.push(Buffer.from(chunk as Buffer))
  return Buffer.concat(chunks)
}

export async function through(input: Buffer | Buffer[], transform: Transform): Promise<Buffer> {
  const chunks: Buffer[] = []
  await pipeline(
    Readable.from(Array.isArray(input) ? input : [input]),
    transform,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk)
        callback()
      },
    }),
  )
  return Buffer.concat(chunks)
}

/** Reused by writeRandomFile: filled anew for each MiB written. */
const randomChunk = Buffer.allocUnsafe(1024 * 1024)

/**
 * Writes `size` random bytes (which do not compress) to `path`, a MiB at a time from one buffer. A
 * new buffer of the whole size, as randomBytes gives, costs a page fault for every 4 KiB of it, and
 * on this kind of virtual machine those cost several times the random bytes themselves (5.4 ms a
 * MiB against 0.8, written to a file).
 */
export function writeRandomFile(path: string, size: number): void {
  const descriptor = openSync(path, 'w')
  try {
    for (let left = size; left > 0;) {
      const length = Math.min(left, randomChunk.length)
      randomFillSync(randomChunk, 0, length)
      for (let written = 0; written < length;) written += writeSync(descriptor, randomChunk, written, length - written)
      left -= length
    }
  } finally {
    closeSync(descriptor)
  }
}

/** Reused by hashFile, for every read. */
const readChunk = Buffer.allocUnsafe(1024 * 1024)

/** A file's size and SHA-256, read a MiB at a time into one buffer (see writeRandomFile for why). */
export function hashFile(path: Buffer | string): {sha256: string; size: number} {
  const hash = createHash('sha256')
  let size = 0
  const descriptor = openSync(path, 'r')
  try {
    for (let read = readSync(descriptor, readChunk); read > 0; read = readSync(descriptor, readChunk)) {
      hash.update(readChunk.subarray(0, read))
      size += read
    }
  } finally {
    closeSync(descriptor)
  }

  return {sha256: hash.digest('hex'), size}
}

/** Cuts `data` into pieces of random sizes up to 1.5 × `batch`, so that some span a whole batch. */
export function randomPieces(data: Buffer, batch: number): Buffer[] {
  const out: Buffer[] = []
  for (let offset = 0; offset < data.length;) {
    const size = Math.min(data.length - offset, 1 + Math.floor(Math.random() * 1.5 * batch))
    out.push(data.subarray(offset, offset + size))
    offset += size
  }

  return out
}

/** Skips the calling suite, saying why, unless it runs as root (CI runs the suite as root). */
export function requireRoot(context: Mocha.Context, why: string): void {
  if (process.getuid?.() === 0) return
  console.log(`      (skipped: ${why} needs root; CI runs the suite as root)`)
  context.skip()
}
