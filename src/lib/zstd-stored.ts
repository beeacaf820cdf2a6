/* eslint-disable no-bitwise -- RFC 8878's headers are bit fields: masks and shifts are how they are written */
/**
 * zstd's stored framing (RFC 8878): a standard zstd frame whose blocks hold bytes as they are
 * (Raw_Block) or one byte repeated (RLE_Block), and never a compressed block. Every zstd decoder reads
 * it (`zstd -d`); this module writes it, and zstd-stored-decoder.ts reads it back without a
 * decompressor.
 *
 * Why: packs of blobs that do not compress (photos, videos) were plain tars, and a tar spends a
 * 512-byte header and up to 511 bytes of padding on each member. In a compressed pack zstd shrinks
 * those to a few bytes; in a plain one they cost about 770 bytes a blob, a few MiB on a tree of
 * thousands of photos and thumbnails. In stored framing the zero runs of each header and the padding
 * become RLE blocks, about 150 bytes a blob in all, while the bytes of the blobs cost no CPU to frame or
 * to read back: a copy, and a 3-byte block header every 128 KiB.
 *
 * A stream in stored framing begins with {@link STORED_MARKER}, a skippable frame that decoders pass
 * over, so that a reader can tell it from a compressed stream by its first four bytes.
 */

/** Magic number of the marker: one of the sixteen skippable-frame magics (0x184D2A50–5F). */
const STORED_MAGIC_NUMBER = 0x18_4d_2a_5e
/** The first four bytes of a stream in stored framing. */
export const STORED_MAGIC = u32(STORED_MAGIC_NUMBER)
const MARKER_PAYLOAD = Buffer.from('stored tar')
/** A skippable frame whose payload names the framing, for whoever looks at the bytes. */
export const STORED_MARKER = Buffer.concat([STORED_MAGIC, u32(MARKER_PAYLOAD.length), MARKER_PAYLOAD])

export const ZSTD_MAGIC_NUMBER = 0xfd_2f_b5_28
/** The largest block RFC 8878 allows, whatever the window. */
export const MAX_BLOCK = 128 * 1024
/**
 * The frame header of what this module writes: zstd's magic, a descriptor with no content size, no
 * checksum (age authenticates every byte, and each blob is checked against its SHA-256) and no
 * dictionary, and a window of 128 KiB (exponent 7, mantissa 0), so that blocks may be MAX_BLOCK.
 */
const FRAME_HEADER = Buffer.concat([u32(ZSTD_MAGIC_NUMBER), Buffer.from([0x00, 7 << 3])])

/** RFC 8878's block types (3.1.1.2.2). */
export const RAW_BLOCK = 0
export const RLE_BLOCK = 1
export const COMPRESSED_BLOCK = 2
/** Runs of zeros at least this long become an RLE block (4 bytes) rather than part of a raw one. */
const MIN_ZERO_RUN = 16

function u32(value: number): Buffer {
  const bytes = Buffer.alloc(4)
  bytes.writeUInt32LE(value)
  return bytes
}

/** The marker and the frame header: what a stream in stored framing begins with. */
export function storedFrameStart(): Buffer {
  return Buffer.concat([STORED_MARKER, FRAME_HEADER])
}

/**
 * Writes the 3-byte header of a block into `target` at `offset`: last-block flag, type, and size (for
 * an RLE block, the size it stands for); returns the offset after it.
 */
export function writeBlockHeader(
  target: Uint8Array,
  offset: number,
  block: {last?: boolean; size: number; type: 'raw' | 'rle'},
): number {
  if (block.size > MAX_BLOCK) throw new RangeError(`a zstd block holds at most ${MAX_BLOCK} bytes, not ${block.size}`)
  const value = (block.size << 3) | ((block.type === 'raw' ? RAW_BLOCK : RLE_BLOCK) << 1) | (block.last ? 1 : 0)
  target[offset] = value & 0xff
  target[offset + 1] = (value >> 8) & 0xff
  target[offset + 2] = value >> 16
  return offset + 3
}

/** The header of a raw block of `size` bytes, which follow it as they are. */
export function rawBlockHeader(size: number): Buffer {
  const header = Buffer.alloc(3)
  writeBlockHeader(header, 0, {size, type: 'raw'})
  return header
}

/** `size` zeros (any number) as RLE blocks of at most MAX_BLOCK each; `last` ends the frame with them. */
export function zeroBlocks(size: number, last = false): Buffer {
  const blocks = Buffer.alloc(4 * Math.max(1, Math.ceil(size / MAX_BLOCK)))
  let offset = 0
  for (let left = size; left > 0 || offset === 0; left -= MAX_BLOCK) {
    offset = writeBlockHeader(blocks, offset, {
      last: last && left <= MAX_BLOCK,
      size: Math.min(left, MAX_BLOCK),
      type: 'rle',
    })
    blocks[offset++] = 0
  }

  return blocks
}

/** The most bytes {@link writeStoredBlocks} writes for `length` bytes: zero runs only ever save bytes. */
export function storedBlocksBound(length: number): number {
  return length + 3 * (Math.ceil(length / MAX_BLOCK) + 1)
}

/**
 * Writes `bytes` into `target` at `offset` as blocks: runs of at least MIN_ZERO_RUN zeros as RLE
 * blocks, the rest as raw ones; returns the offset after them (at most storedBlocksBound further).
 * Meant for small buffers that are mostly zeros, such as a tar header: a blob's bytes go in raw blocks.
 */
export function writeStoredBlocks(bytes: Uint8Array, target: Uint8Array, offset: number): number {
  let out = offset
  const raw = (from: number, to: number) => {
    for (let start = from; start < to; start += MAX_BLOCK) {
      const end = Math.min(to, start + MAX_BLOCK)
      out = writeBlockHeader(target, out, {size: end - start, type: 'raw'})
      target.set(bytes.subarray(start, end), out)
      out += end - start
    }
  }

  let rawStart = 0
  let at = 0
  while (at < bytes.length) {
    if (bytes[at] !== 0) {
      at++
      continue
    }

    let end = at
    while (end < bytes.length && bytes[end] === 0) end++
    if (end - at >= MIN_ZERO_RUN) {
      raw(rawStart, at)
      for (let start = at; start < end; start += MAX_BLOCK) {
        out = writeBlockHeader(target, out, {size: Math.min(end - start, MAX_BLOCK), type: 'rle'})
        target[out++] = 0
      }

      rawStart = end
    }

    at = end
  }

  raw(rawStart, bytes.length)
  return out
}
