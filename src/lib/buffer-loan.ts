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

/**
 * Detaches `buffer`, which drops its bytes at once: ArrayBuffer.prototype.transfer on Node.js 22 and
 * later. Node.js 20 lacks it; there the buffer is transferred in a message to a closed port, which
 * detaches it the same way, and the message, with the bytes, is dropped (about a microsecond each).
 */
const detach: (buffer: ArrayBuffer) => void = (() => {
  const {transfer} = ArrayBuffer.prototype as {transfer?: (this: ArrayBuffer, length: number) => ArrayBuffer}
  if (transfer !== undefined) return (buffer: ArrayBuffer) => transfer.call(buffer, 0)
  const nowhere = new MessageChannel().port1
  nowhere.close()
  return (buffer: ArrayBuffer) => nowhere.postMessage(null, [buffer])
})()

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

/**
 * Frees the bytes of `chunk` now, rather than at V8's next collection, where the runtime can. Only for
 * a buffer that this code made, that nothing else holds a view of, and that is never read again, such
 * as what node:crypto's `update` returns (a new buffer of its own for every call). A buffer that is
 * only a part of its memory (Node.js's pool for small buffers, or a view) is left alone.
 *
 * Why: node:crypto zero-fills a new buffer for each 64 KiB it encrypts or decrypts. Spent ones waited
 * for a collection, the allocator gave their memory back to the system in between, and the next ones
 * faulted it in again: the cipher thread spent several times as long on that as on the cipher.
 */
export function freeNow(chunk: Uint8Array): void {
  if (chunk.length === 0) return
  if (chunk.byteOffset !== 0 || chunk.length !== chunk.buffer.byteLength) return
  try {
    detach(chunk.buffer as ArrayBuffer)
  } catch {
    // One that the runtime will not let go (marked untransferable, say) waits for V8, as it always may.
  }
}

/** The lender of chunks that are freed, not kept, when given back (see {@link lendToFree}). */
class FreeingLender extends BufferLender {
  override receive(buffer: ArrayBuffer): void {
    freeNow(new Uint8Array(buffer))
  }
}

const freeing = new FreeingLender(0)

/**
 * Lends `chunk`, a buffer made for this one output (node:crypto's), to the stages after it: the one
 * that gives it back frees it now ({@link freeNow}), instead of leaving it for V8 to collect.
 */
export function lendToFree(chunk: Buffer): Buffer {
  if (chunk.byteOffset !== 0 || chunk.length !== chunk.buffer.byteLength) return chunk
  return freeing.lend(chunk)
}
