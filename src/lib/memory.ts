import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'

const PACE_BYTES = 4 * 1024 * 1024

type CollectGarbage = (options: {type: 'major' | 'minor'}) => void
let collectGarbage: CollectGarbage | undefined

/**
 * Keeps the resident memory of a long stream flat. Called once, before any data flows.
 *
 * Every chunk of a backup is a Buffer whose bytes live outside the JS heap. V8 frees those only when it
 * collects the small JS objects that hold them, and it sees no reason to while the JS heap is quiet: up
 * to 64 MiB of spent chunks can wait for a collection, and the allocator keeps that memory as RSS.
 * Most chunks now go round instead (buffer-loan.ts), but some are still made afresh: node:crypto
 * returns a new buffer for every 64 KiB it encrypts or decrypts (freed at once once spent on Node.js
 * 22 and later, but not on 20), and a program stage's output (zstd) comes in a new buffer per read of
 * its pipe. And walking a tree of many files keeps objects alive
 * across young collections, which makes V8 grow the young generation to its largest (16 MiB
 * semi-spaces). Without these settings, after buffers went round, a backup of 100,000 small files
 * still peaked at 188 MiB, and of the 278 MiB mixed tree at 173 MiB (131 and 125 with them).
 * Two measures here, and one in {@link limitOldGenerationGrowth}:
 * - the young generation stays at its start-up size, instead of growing to 16 MiB semi-spaces;
 * - {@link MemoryPacer} runs a young-generation collection (under a millisecond) every 4 MiB streamed.
 *   Together these took `create` of 1 GiB from 135 to 95 MiB to a local folder, and from 178 to
 *   135 MiB to S3, with throughput within 3%.
 */
export function keepMemoryFlat(): void {
  if (collectGarbage !== undefined) return
  setFlag('--semi-space-growth-factor=1')
  setFlag('--expose-gc')
  // The flag exposes `gc` to contexts created from now on; this one only serves to fetch it.
  collectGarbage = runInNewContext('gc') as CollectGarbage
}

/**
 * Lets the old generation grow by 20% of its live size between full collections, instead of V8's
 * factor of up to 4. For work made of many small items: archiving a tree of tiny files promotes a
 * little of each file's objects, and 100,000 of them peaked at 156 MiB, with this 124 MiB. Not set at
 * start-up, where module loading would pay for many more full collections (a cold `list` 30% slower).
 */
export function limitOldGenerationGrowth(): void {
  setFlag('--heap-growing-percent=20')
}

const flagsSet = new Set<string>()

function setFlag(flag: string): void {
  setFlagsFromString(flag)
  flagsSet.add(flag)
}

/**
 * Sets the flags above again. Starting a worker thread puts V8's flags back to those of the command
 * line, for the whole process: after a restore had started its writing thread, the main thread's young
 * generation grew to 16 MiB semi-spaces, and its peak RSS by 30 MiB. startModuleWorker calls this once
 * the worker is online.
 */
export function setMemoryFlagsAgain(): void {
  for (const flag of flagsSet) setFlagsFromString(flag)
}

/** Counts streamed bytes and collects young garbage at a steady pace; a no-op until keepMemoryFlat ran. */
export class MemoryPacer {
  private since = 0

  /** `pace`: the bytes between collections; a thread whose heap is small can afford fewer. */
  constructor(private readonly pace = PACE_BYTES) {}

  advance(bytes: number): void {
    this.since += bytes
    if (this.since < this.pace) return
    this.since = 0
    collectGarbage?.({type: 'minor'})
  }
}
