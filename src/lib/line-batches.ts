import {StringDecoder} from 'node:string_decoder'

import {giveBack} from './buffer-loan.js'

/**
 * The lines of UTF-8 text, as many as each chunk of it completes, without the `\n` that ends each;
 * the last line also when no `\n` ends it. Lines are split here rather than by readline, which costs
 * an event and a promise a line: for MANIFEST.json and a packed backup's index, with a line for every
 * file, that was a tenth of what reading them allocated. A character whose bytes straddle two chunks is
 * decoded whole. Each chunk is read last here, and given back (buffer-loan.ts) once decoded.
 *
 * @yields the lines each chunk completes, in order (none when a chunk completes none)
 */
export async function* lineBatches(source: AsyncIterable<Buffer>): AsyncGenerator<string[], void> {
  const decoder = new StringDecoder('utf8')
  let rest = ''
  for await (const chunk of source) {
    // Only the new text is searched: a long line (a file of many blobs in an index) spans many
    // chunks, and searching all of it again at each one would cost the square of its length.
    const text = decoder.write(chunk)
    // Decoded, so read last here: a lent chunk (a decrypted one) is freed now, not at a collection.
    giveBack(chunk)
    const end = text.lastIndexOf('\n')
    if (end === -1) {
      rest += text
      continue
    }

    const lines = (rest + text.slice(0, end)).split('\n')
    rest = text.slice(end + 1)
    yield lines
  }

  const last = rest + decoder.end()
  if (last !== '') yield [last]
}
