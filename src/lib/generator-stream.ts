import {Readable} from 'node:stream'

/**
 * A generator's chunks as a byte stream, like Readable.from, except when the stream is destroyed.
 * Readable.from closes a destroyed stream only once the generator has returned, which waits on
 * whatever the generator awaits: a read that a hung mount holds, indefinitely, and with it the
 * 'error' and 'close' that a pipeline waits for. This stream runs `stop` (closing what the generator
 * opened: files, reads) and closes then; the generator returns whenever it next runs.
 */
export function streamOf(chunks: AsyncGenerator<Buffer, void>, stop: () => Promise<void> = async () => {}): Readable {
  let pulling = false
  return new Readable({
    destroy(error, callback) {
      chunks.return().catch(() => {})
      stop()
        .catch(() => {})
        .then(() => callback(error))
    },
    highWaterMark: 1,
    read() {
      if (pulling) return
      pulling = true
      const pull = async () => {
        try {
          for (;;) {
            const {done, value} = await chunks.next()
            if (this.destroyed) return
            if (done) {
              this.push(null)
              return
            }

            if (!this.push(value)) return
          }
        } catch (error) {
          this.destroy(error as Error)
        } finally {
          pulling = false
        }
      }

      pull().catch(() => {})
    },
  })
}
