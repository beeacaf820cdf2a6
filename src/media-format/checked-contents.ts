/**
 * What one run of `verify` has read and checked so far, so that a later backup of the same run need
 * not read it again: a set of 16-byte keys, each standing for a content the format read and found
 * whole (for packs, a file's blobs where its index places them, its size and its recorded SHA-256).
 *
 * Kept in one buffer of open addressing, not as JavaScript objects, so that its memory is bounded by
 * construction: it grows by doubling from 16 KiB up to `maxBytes` (4 MiB: 131,072 keys at half load),
 * and past that remembers nothing more. A key it does not hold is only read again; a key it holds was
 * added, never guessed (a key that is all zeros, the empty slot, is never held).
 */
export class CheckedContents {
  private count = 0
  private slots: Buffer

  constructor(
    private readonly maxBytes = 4 * 1024 * 1024,
    initialBytes = 16 * 1024,
  ) {
    this.slots = Buffer.alloc(Math.min(initialBytes, maxBytes))
  }

  /** How many keys it holds. */
  get size(): number {
    return this.count
  }

  /** Records `key` (KEY_BYTES bytes); once the table is full, nothing more is recorded. */
  add(key: Buffer): void {
    if (isEmptyKey(key)) return
    if ((this.count + 1) * 2 * KEY_BYTES > this.slots.length) {
      if (this.slots.length * 2 > this.maxBytes) return
      this.grow()
    }

    const slot = this.slotOf(this.slots, key)
    if (isEmptyAt(this.slots, slot)) {
      key.copy(this.slots, slot, 0, KEY_BYTES)
      this.count++
    }
  }

  has(key: Buffer): boolean {
    if (isEmptyKey(key)) return false
    return !isEmptyAt(this.slots, this.slotOf(this.slots, key))
  }

  private grow(): void {
    const old = this.slots
    this.slots = Buffer.alloc(old.length * 2)
    for (let offset = 0; offset < old.length; offset += KEY_BYTES) {
      if (isEmptyAt(old, offset)) continue
      const key = old.subarray(offset, offset + KEY_BYTES)
      key.copy(this.slots, this.slotOf(this.slots, key))
    }
  }

  /** The offset of `key`'s slot in `slots`, or of the empty slot where it would go (linear probing). */
  private slotOf(slots: Buffer, key: Buffer): number {
    const count = slots.length / KEY_BYTES
    // The keys are hashes: their first bytes are as good an index as any.
    for (let index = key.readUInt32LE(0) % count; ; index = (index + 1) % count) {
      const offset = index * KEY_BYTES
      if (isEmptyAt(slots, offset) || slots.compare(key, 0, KEY_BYTES, offset, offset + KEY_BYTES) === 0) return offset
    }
  }
}

/** The length of a key: the first 16 bytes of a SHA-256. */
export const KEY_BYTES = 16

function isEmptyAt(slots: Buffer, offset: number): boolean {
  return (
    slots.readUInt32LE(offset) === 0 &&
    slots.readUInt32LE(offset + 4) === 0 &&
    slots.readUInt32LE(offset + 8) === 0 &&
    slots.readUInt32LE(offset + 12) === 0
  )
}

function isEmptyKey(key: Buffer): boolean {
  return isEmptyAt(key, 0)
}
