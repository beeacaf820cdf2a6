import {execFileSync} from 'node:child_process'
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
