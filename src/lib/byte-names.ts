/**
 * File names as the kernel has them: bytes, not text. Most are UTF-8, but a name written by an old
 * upload handler or copied from a Latin-1 system need not be, and a backup must keep it byte for byte.
 *
 * Names travel through this tool as JavaScript strings in the "surrogateescape" form of PEP 383
 * (Python's `os.fsdecode`): the valid UTF-8 parts of a name decode as usual, and each byte that is not
 * part of a valid UTF-8 sequence becomes the lone surrogate U+DC80 + (byte - 0x80). The mapping is
 * one-to-one, so `encodeName(decodeName(bytes))` is always `bytes`. A UTF-8 name is its ordinary string,
 * and JSON carries the escaped ones as `\udcXX` (Python's `os.fsencode` turns them back into bytes).
 */

const ESCAPE_BASE = 0xdc_00
const ESCAPED = /[\uD800-\uDFFF]/
/** An escaped byte: a low surrogate of the escape range with no high surrogate before it. */
const LONE_ESCAPE = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/g

/** The string form of a name's bytes; see the module comment. */
export function decodeName(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')
  // U+FFFD is how Node marks bytes it could not decode; a name without it was valid UTF-8.
  if (!text.includes('\uFFFD')) return text
  let result = ''
  let index = 0
  while (index < bytes.length) {
    const length = utf8SequenceLength(bytes, index)
    if (length === 0) {
      result += String.fromCodePoint(ESCAPE_BASE + bytes[index])
      index++
    } else {
      result += Buffer.from(bytes.subarray(index, index + length)).toString('utf8')
      index += length
    }
  }

  return result
}

/** The bytes of a name in string form: the inverse of {@link decodeName}. */
export function encodeName(name: string): Buffer {
  if (!ESCAPED.test(name)) return Buffer.from(name, 'utf8')
  const parts: Buffer[] = []
  let start = 0
  // Code units, not code points: a lone surrogate is exactly what is looked for.
  /* eslint-disable unicorn/prefer-code-point */
  for (let index = 0; index < name.length; index++) {
    const unit = name.charCodeAt(index)
    if (unit >= 0xd8_00 && unit <= 0xdb_ff) {
      const next = name.charCodeAt(index + 1)
      if (next >= 0xdc_00 && next <= 0xdf_ff) {
        index++
        continue
      }
    } else if (unit < 0xdc_00 || unit > 0xdf_ff) {
      continue
    }

    if (unit < 0xdc_80 || unit > 0xdc_ff) {
      throw new Error(`the name ${JSON.stringify(name)} holds a character that no file name can hold`)
    }

    parts.push(Buffer.from(name.slice(start, index), 'utf8'), Buffer.of(unit - ESCAPE_BASE))
    start = index + 1
  }
  /* eslint-enable unicorn/prefer-code-point */

  parts.push(Buffer.from(name.slice(start), 'utf8'))
  return Buffer.concat(parts)
}

/** True when the name is valid UTF-8 on disk: its string is ordinary text. */
export function isUtf8Name(name: string): boolean {
  return !ESCAPED.test(name) || name.search(LONE_ESCAPE) === -1
}

/** A name for messages: escaped bytes shown as `\xE9`, so that a terminal shows what is on disk. */
export function printableName(name: string): string {
  return name.replaceAll(LONE_ESCAPE, (unit) => `\\x${(unit.codePointAt(0)! - ESCAPE_BASE).toString(16).toUpperCase()}`)
}

/** The length of the valid UTF-8 sequence at `index` (1–4 bytes), or 0 when the byte there starts none. */
function utf8SequenceLength(bytes: Uint8Array, index: number): number {
  const first = bytes[index]
  if (first < 0x80) return 1
  let length: number
  let low = 0x80
  let high = 0xbf
  if (first >= 0xc2 && first <= 0xdf) length = 2
  else if (first >= 0xe0 && first <= 0xef) {
    length = 3
    // No overlong forms (E0 80–9F) and no UTF-16 surrogates (ED A0–BF).
    if (first === 0xe0) low = 0xa0
    if (first === 0xed) high = 0x9f
  } else if (first >= 0xf0 && first <= 0xf4) {
    length = 4
    if (first === 0xf0) low = 0x90
    if (first === 0xf4) high = 0x8f
  } else return 0

  if (index + length > bytes.length) return 0
  const second = bytes[index + 1]
  if (second < low || second > high) return 0
  for (let offset = 2; offset < length; offset++) {
    const next = bytes[index + offset]
    if (next < 0x80 || next > 0xbf) return 0
  }

  return length
}

/**
 * The file system path of `relative` (in the string form above) below `root`, as bytes, in a buffer of
 * its own. An extraction makes one a member, and a slice of Node's shared pool would cost more than
 * its bytes: a pool slab outlives the few dozen paths cut from it, is promoted to V8's old generation
 * with them, and waits for a full collection. A restore of 100,000 tiny files held 13 MiB of such
 * slabs on the service thread at its end.
 */
export function fsPathBelow(root: string, relative: string): Buffer {
  const prefix = relative === '' ? root : `${root}/`
  const prefixBytes = Buffer.byteLength(prefix)
  // A UTF-8 name is its string's own bytes; only a name with bytes that are not needs encodeName.
  const name = ESCAPED.test(relative) ? encodeName(relative) : relative
  const path = Buffer.allocUnsafeSlow(prefixBytes + (typeof name === 'string' ? Buffer.byteLength(name) : name.length))
  path.write(prefix)
  if (typeof name === 'string') path.write(name, prefixBytes)
  else name.copy(path, prefixBytes)
  return path
}
