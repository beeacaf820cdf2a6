import {createHash, Hash} from 'node:crypto'
import {Transform, TransformCallback} from 'node:stream'

/** A pass-through that counts bytes and takes their SHA-256 on the way, so data is read only once. */
export class HashingStream extends Transform {
  bytes = 0
  private readonly hash: Hash = createHash('sha256')
  private hex: string | undefined

  /** The hex digest; only valid once the stream has ended. */
  get sha256(): string {
    if (this.hex === undefined) throw new Error('HashingStream: digest read before the end of the stream')
    return this.hex
  }

  override _flush(callback: TransformCallback): void {
    this.hex = this.hash.digest('hex')
    callback()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    this.hash.update(chunk)
    callback(null, chunk)
  }
}
