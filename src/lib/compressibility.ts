/**
 * A cheap guess at whether zstd would shrink a blob, so that photos, videos and archives, which are
 * compressed already, are stored as they are and cost no compression work (as restic's "auto" mode
 * spares them). It measures the byte entropy of a sample from the middle of the blob, where a file's
 * headers are not: compressed or encrypted data is close to 8 bits a byte, text and most
 * uncompressed formats well below. A wrong guess costs a little space or a little time, never data.
 */

/** Bytes sampled: enough for a steady estimate (±0.05 bit on random data), a few microseconds' work. */
const SAMPLE_BYTES = 4096
/** Below this, zstd's frame costs more than it could save on incompressible bytes: try anyway. */
const SMALL_BYTES = 512
/** Bits a byte above which a sample counts as incompressible; random data measures about 8. */
const INCOMPRESSIBLE_BITS = 7.5

const counts = new Uint32Array(256)

export function looksCompressible(data: Uint8Array): boolean {
  if (data.length < SMALL_BYTES) return true
  return sampleEntropy(data) < INCOMPRESSIBLE_BITS
}

/**
 * Shannon entropy, in bits a byte, of up to SAMPLE_BYTES from the middle of `data`, with the
 * Miller–Madow correction. Counting a short sample under-reads entropy: 512 random bytes cannot show
 * all 256 values evenly, and measured 7.59 bits on average (7.45 at worst in 20,000 tries), below the
 * threshold often enough to be guessed compressible. The correction adds back the expected shortfall,
 * (values seen − 1) / (2 × sample length) nats, which puts random data near 8 bits at any
 * length (7.9 on average at 512 bytes, the shortest sampled; 7.7 at worst in 20,000 tries).
 */
export function sampleEntropy(data: Uint8Array): number {
  const length = Math.min(SAMPLE_BYTES, data.length)
  const start = Math.floor((data.length - length) / 2)
  counts.fill(0)
  for (let index = start; index < start + length; index++) counts[data[index]]++
  let bits = 0
  let seen = 0
  for (const count of counts) {
    if (count === 0) continue
    seen++
    const share = count / length
    bits -= share * Math.log2(share)
  }

  return bits + (seen - 1) / (2 * length * Math.LN2)
}
