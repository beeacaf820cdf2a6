/**
 * Buffers that a stream stage lends to the stages after it, and that the last of them gives back once
 * it is done with the bytes: the lender writes its next output into them instead of a new buffer.
 *
 * Why: a chunk's bytes live outside the JS heap, and V8 frees them only when it collects the small
 * object that holds them. A backup streams hundreds of MB through several stages; with a new buffer a
 * chunk per stage, tens of MB of spent chunks wait for a collection at any time, and the allocator
 * keeps them as resident memory. Buffers that go round a loop keep the memory of a stream a constant.
 *
 * The rule that makes it safe: only the stage that consumes a chunk last gives it back, and only once
 * it keeps no view of it (its bytes were copied elsewhere, or written to a file). Stages in between
 * pass chunks on unchanged and never give them back. A chunk that is never given back costs nothing
 * but its memory, which V8 collects as usual: giving back is an optimisation, never an obligation.
 */

/** Each lent ArrayBuffer's lender, and the part of it that was lent. */
const loans = new WeakMap<ArrayBuffer, {byteOffset: number; lender: BufferLender; length: number}>()

/** A lender's spare buffers: those given back, ready to be written again. */
export class BufferLender {
  private accepting = true
  private readonly spare: ArrayBuffer[] = []

  constructor(private readonly maxSpare: number) {}

  /** A spare buffer given back, or undefined: the caller makes one. */
  borrowBack(): ArrayBuffer | undefined {
    return this.spare.pop()
  }

  /**
   * Drops the spare buffers, and those given back until the next `lend`: for a lender that outlives
   * its work (one per process), so that a host's process keeps no buffers between commands.
   */
  clear(): void {
    this.spare.length = 0
    this.accepting = false
  }

  /** Hands `buffer` (a view of a whole ArrayBuffer, or part of one) down the stream. */
  lend(buffer: Buffer): Buffer {
    this.accepting = true
    loans.set(buffer.buffer as ArrayBuffer, {byteOffset: buffer.byteOffset, lender: this, length: buffer.length})
    return buffer
  }

  /** Takes back a buffer; only giveBack calls it. */
  receive(buffer: ArrayBuffer): void {
    if (this.accepting && this.spare.length < this.maxSpare) this.spare.push(buffer)
  }
}

/** Whether `chunk` is a lent buffer (the whole of what was lent), which its consumer may give back. */
export function isLent(chunk: Uint8Array): boolean {
  const loan = loans.get(chunk.buffer as ArrayBuffer)
  return loan !== undefined && loan.byteOffset === chunk.byteOffset && loan.length === chunk.length
}

/**
 * Called by the last consumer of `chunk` once it no longer needs its bytes. Does nothing for a chunk
 * that was not lent, or that is not the whole of what was lent (a stage split it: another part may
 * still be on its way). A chunk is taken back once: a second call for it does nothing.
 */
export function giveBack(chunk: Uint8Array): void {
  if (!isLent(chunk)) return
  const whole = chunk.buffer as ArrayBuffer
  const {lender} = loans.get(whole)!
  loans.delete(whole)
  lender.receive(whole)
}
