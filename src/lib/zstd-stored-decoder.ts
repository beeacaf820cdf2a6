/* eslint-disable no-bitwise -- RFC 8878's headers are bit fields: masks and shifts are how they are read */
import {Transform, TransformCallback} from 'node:stream'

import {BufferLender, giveBack} from './buffer-loan.js'
import {COMPRESSED_BLOCK, MAX_BLOCK, RAW_BLOCK, RLE_BLOCK, ZSTD_MAGIC_NUMBER} from './zstd-stored.js'

/**
 * Reads zstd's stored framing (see zstd-stored.ts, which writes it) without a decompressor: a packed
 * download or restore of photos and videos copies their bytes out of raw blocks.
 */

/** What a reader of stored framing raises on bytes that are not: never other bytes. */
export class StoredFramingError extends Error {
  /** Prefixed as node:zlib's zstd errors are, so that isZstdDataError knows it. */
  readonly code = 'ZSTD_error_stored_framing'
}

/** Bytes decoded into each output chunk. */
const OUTPUT_BYTES = 256 * 1024
/** Output chunks given back by the consumers and kept for reuse. */
const SPARE_OUTPUTS = 8

type Expecting =
  | 'block header'
  | 'checksum'
  | 'frame descriptor'
  | 'frame header'
  | 'magic number'
  | 'raw block'
  | 'rle byte'
  | 'skippable frame'
  | 'skippable size'

/**
 * Reads zstd frames that hold raw and RLE blocks only, and skippable frames, as any zstd decoder
 * does; a compressed block, a dictionary or a truncated frame is a StoredFramingError. A content
 * checksum, which this module never writes, is skipped unchecked; a content size is checked.
 *
 * It is the last consumer of its input (it copies the bytes out, and gives each chunk back) and
 * lends its output chunks, which the consumer may give back (buffer-loan.ts).
 */
export class StoredFrameDecoder extends Transform {
  private blockLimit = MAX_BLOCK
  private contentSize: number | undefined
  private expecting: Expecting = 'magic number'
  private frameBytes = 0
  private frames = 0
  private hasChecksum = false
  private header = Buffer.alloc(32)
  private headerFilled = 0
  private lastBlock = false
  /** Bytes left in the current raw block or skippable frame. */
  private left = 0
  private readonly lender = new BufferLender(SPARE_OUTPUTS)
  private output = Buffer.allocUnsafeSlow(OUTPUT_BYTES)
  private outputFilled = 0

  constructor() {
    super({readableHighWaterMark: OUTPUT_BYTES, writableHighWaterMark: OUTPUT_BYTES})
  }

  override _flush(callback: TransformCallback): void {
    if (this.expecting !== 'magic number' || this.headerFilled > 0) {
      callback(new StoredFramingError(`the stream ends inside a frame, before its ${this.expecting}`))
      return
    }

    if (this.frames === 0) {
      callback(new StoredFramingError('the stream holds no zstd frame'))
      return
    }

    this.pushOutput()
    callback()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.consume(chunk)
    } catch (error) {
      callback(error as Error)
      return
    }

    giveBack(chunk)
    callback()
  }

  private consume(chunk: Buffer): void {
    let at = 0
    while (at < chunk.length) {
      if (this.expecting === 'raw block' || this.expecting === 'skippable frame') {
        const length = Math.min(this.left, chunk.length - at)
        if (this.expecting === 'raw block') this.copyOut(chunk, at, length)
        at += length
        this.left -= length
        if (this.left > 0) continue
        if (this.expecting === 'raw block') this.endOfBlock()
        else this.expecting = 'magic number'
        continue
      }

      // A header: gathered whole first, since a chunk may end inside it.
      const wanted = this.headerLength()
      const length = Math.min(wanted - this.headerFilled, chunk.length - at)
      chunk.copy(this.header, this.headerFilled, at, at + length)
      this.headerFilled += length
      at += length
      if (this.headerFilled < wanted) return
      this.headerFilled = 0
      this.onHeader(this.header.subarray(0, wanted))
    }
  }

  /** Copies decoded bytes out, handing on each output chunk as it fills. */
  private copyOut(source: Buffer, from: number, length: number): void {
    this.frameBytes += length
    let at = from
    const end = from + length
    while (at < end) {
      const copied = source.copy(this.output, this.outputFilled, at, end)
      this.outputFilled += copied
      at += copied
      if (this.outputFilled === OUTPUT_BYTES) this.pushOutput()
    }
  }

  private endOfBlock(): void {
    if (!this.lastBlock) {
      this.expecting = 'block header'
      return
    }

    if (this.hasChecksum) {
      this.expecting = 'checksum'
      return
    }

    this.endOfFrame()
  }

  private endOfFrame(): void {
    if (this.contentSize !== undefined && this.contentSize !== this.frameBytes) {
      throw new StoredFramingError(`a frame holds ${this.frameBytes} bytes, and its header says ${this.contentSize}`)
    }

    this.frames++
    this.expecting = 'magic number'
  }

  private fill(byte: number, length: number): void {
    this.frameBytes += length
    let left = length
    while (left > 0) {
      const end = Math.min(OUTPUT_BYTES, this.outputFilled + left)
      this.output.fill(byte, this.outputFilled, end)
      left -= end - this.outputFilled
      this.outputFilled = end
      if (this.outputFilled === OUTPUT_BYTES) this.pushOutput()
    }
  }

  private headerLength(): number {
    switch (this.expecting) {
      case 'block header': {
        return 3
      }

      case 'frame descriptor': {
        return 1
      }

      case 'frame header': {
        return frameHeaderLength(this.header[0])
      }

      case 'rle byte': {
        return 1
      }

      default: {
        return 4
      }
    }
  }

  private onBlockHeader(value: number): void {
    this.lastBlock = (value & 1) === 1
    const type = (value >> 1) & 3
    const size = value >> 3
    if (type === COMPRESSED_BLOCK) {
      throw new StoredFramingError('a compressed block: this stream needs a zstd decompressor, not stored framing')
    }

    if (type !== RAW_BLOCK && type !== RLE_BLOCK) throw new StoredFramingError('a block of the reserved type')
    if (size > this.blockLimit) {
      throw new StoredFramingError(`a block of ${size} bytes, over the frame's limit of ${this.blockLimit}`)
    }

    this.left = size
    if (type === RLE_BLOCK) this.expecting = 'rle byte'
    else if (size > 0) this.expecting = 'raw block'
    else this.endOfBlock()
  }

  private onFrameHeader(header: Buffer): void {
    const descriptor = header[0]
    const singleSegment = (descriptor & 0x20) !== 0
    if ((descriptor & 0x08) !== 0) throw new StoredFramingError('a frame header with its reserved bit set')
    if ((descriptor & 0x03) !== 0) throw new StoredFramingError('a frame that needs a dictionary')
    this.hasChecksum = (descriptor & 0x04) !== 0
    let at = 1
    let window = Number.POSITIVE_INFINITY
    if (!singleSegment) {
      const exponent = header[at] >> 3
      const mantissa = header[at] & 7
      const base = 2 ** (10 + exponent)
      window = base + (base / 8) * mantissa
      at++
    }

    const sizeBytes = contentSizeLength(descriptor)
    if (sizeBytes === 0) {
      this.contentSize = undefined
    } else {
      let size = 0
      for (let index = sizeBytes - 1; index >= 0; index--) size = size * 256 + header[at + index]
      this.contentSize = sizeBytes === 2 ? size + 256 : size
    }

    if (singleSegment) window = this.contentSize ?? 0
    this.blockLimit = Math.min(window, MAX_BLOCK)
    this.frameBytes = 0
    this.expecting = 'block header'
  }

  private onHeader(header: Buffer): void {
    switch (this.expecting) {
      case 'block header': {
        this.onBlockHeader(header[0] | (header[1] << 8) | (header[2] << 16))
        break
      }

      case 'checksum': {
        this.endOfFrame()
        break
      }

      case 'frame descriptor': {
        // Kept at the start of `header`: the rest of the frame header is gathered after it.
        // (Never complete on its own: a window descriptor or a content size follows it.)
        this.headerFilled = 1
        this.expecting = 'frame header'
        break
      }

      case 'frame header': {
        this.onFrameHeader(header)
        break
      }

      case 'magic number': {
        const magic = header.readUInt32LE(0)
        if (magic === ZSTD_MAGIC_NUMBER) this.expecting = 'frame descriptor'
        else if ((magic & 0xff_ff_ff_f0) >>> 0 === 0x18_4d_2a_50) this.expecting = 'skippable size'
        else throw new StoredFramingError('bytes that are not a zstd frame')
        break
      }

      case 'rle byte': {
        this.fill(header[0], this.left)
        this.left = 0
        this.endOfBlock()
        break
      }

      case 'skippable size': {
        this.left = header.readUInt32LE(0)
        this.expecting = this.left === 0 ? 'magic number' : 'skippable frame'
        break
      }

      default: {
        throw new StoredFramingError(`unexpected ${this.expecting}`)
      }
    }
  }

  private pushOutput(): void {
    if (this.outputFilled === 0) return
    const full = this.lender.lend(this.output.subarray(0, this.outputFilled))
    const spare = this.lender.borrowBack()
    this.output = spare === undefined ? Buffer.allocUnsafeSlow(OUTPUT_BYTES) : Buffer.from(spare)
    this.outputFilled = 0
    this.push(full)
  }
}

/** Bytes of a frame's content size field, by its descriptor (RFC 8878, 3.1.1.1.1). */
function contentSizeLength(descriptor: number): number {
  const flag = descriptor >> 6
  if (flag === 0) return (descriptor & 0x20) === 0 ? 0 : 1
  return [0, 2, 4, 8][flag]
}

/** The frame header's length after the magic number, descriptor included, by its descriptor. */
function frameHeaderLength(descriptor: number): number {
  const singleSegment = (descriptor & 0x20) !== 0
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]
  return 1 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeLength(descriptor)
}
