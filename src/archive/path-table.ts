/* eslint-disable no-bitwise -- a hash table of packed words: masks and shifts are its arithmetic */
import {randomInt} from 'node:crypto'

/** What an archive holds at a path, as extraction would leave it. */
export enum PathKind {
  File = 2,
  Folder = 1,
  Link = 3,
}

/** A prime below 2^26: the product of two residues stays exact in a double. */
const PRIME = 67_108_859
/** Slots of three 32-bit words: 94 bits of the path's four hashes, and its kind in the low two bits. */
const WORDS = 3
const INITIAL_SLOTS = 1024

/**
 * The kinds of the paths of an archive, for checks that need every path seen so far (a name that
 * appears twice, a file used as a folder) in 12 bytes a path, whatever its length: about 24 MiB for
 * a million files, where a Set of the names would take several times that.
 *
 * A path is known by four polynomial hashes of its UTF-16 code units (a name's string form is
 * one-to-one with its bytes, see byte-names.ts), each evaluated at a random point modulo {@link PRIME}:
 * two different paths of up to L code units agree on one with a chance of at most L / PRIME, whatever
 * the paths, since the points are drawn by this process and nobody who chooses file names knows them.
 * 94 of their 104 bits are kept: for a million paths of 50 units, the chance that any two share them
 * is below 10^-11. A collision would only make a check refuse an archive that is fine, never pass one
 * that is not.
 */
export class PathTable {
  private count = 0
  private readonly hashes = new Float64Array(4)
  private readonly points = Float64Array.of(randomPoint(), randomPoint(), randomPoint(), randomPoint())
  private slots = new Uint32Array(INITIAL_SLOTS * WORDS)
  private readonly words = new Uint32Array(WORDS)

  private get capacity(): number {
    return this.slots.length / WORDS
  }

  /** The kind recorded for `path`, if any. */
  get(path: string): PathKind | undefined {
    const kind = this.slots[this.find(this.hash(path)) + 2] & 3
    return kind === 0 ? undefined : (kind as PathKind)
  }

  /** Records `path` as `kind` (replacing what was recorded). */
  set(path: string, kind: PathKind): void {
    const words = this.hash(path)
    let at = this.find(words)
    if ((this.slots[at + 2] & 3) === 0) {
      if ((this.count + 1) * 4 > this.capacity * 3) {
        this.grow()
        at = this.find(words)
      }

      this.count++
    }

    this.slots[at] = words[0]
    this.slots[at + 1] = words[1]
    this.slots[at + 2] = (words[2] & ~3) | kind
  }

  /** The slot that holds these words, or the empty one where they go (linear probing). */
  private find(words: Uint32Array): number {
    const mask = this.capacity - 1
    for (let slot = words[0] & mask; ; slot = (slot + 1) & mask) {
      const at = slot * WORDS
      if ((this.slots[at + 2] & 3) === 0) return at
      if (this.slots[at] === words[0] && this.slots[at + 1] === words[1] && this.slots[at + 2] >>> 2 === words[2] >>> 2)
        return at
    }
  }

  private grow(): void {
    const old = this.slots
    this.slots = new Uint32Array(old.length * 2)
    const words = new Uint32Array(WORDS)
    for (let at = 0; at < old.length; at += WORDS) {
      if ((old[at + 2] & 3) === 0) continue
      words.set(old.subarray(at, at + WORDS))
      this.slots.set(words, this.find(words))
    }
  }

  /** The path's words (kind bits clear), in a buffer reused from call to call. */
  private hash(path: string): Uint32Array {
    const {hashes, points} = this
    hashes.fill(1)
    for (let index = 0; index < path.length; index++) {
      // Code units, not code points: an escaped byte is a lone surrogate (byte-names.ts).
      // eslint-disable-next-line unicorn/prefer-code-point
      const unit = path.charCodeAt(index) + 1
      for (let which = 0; which < 4; which++) hashes[which] = (hashes[which] * points[which] + unit) % PRIME
    }

    // 26 bits each of the first three, and 16 of the fourth spread over the words' top bits.
    const last = hashes[3]
    this.words[0] = hashes[0] | ((last & 0x3f) << 26)
    this.words[1] = hashes[1] | (((last >>> 6) & 0x3f) << 26)
    this.words[2] = (hashes[2] << 2) | (((last >>> 12) & 0xf) << 28)
    return this.words
  }
}

function randomPoint(): number {
  return randomInt(1 << 20, PRIME)
}
