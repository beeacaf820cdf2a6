import {Readable} from 'node:stream'

/**
 * How far into a line a schema statement's account or name can be: the longest versioned-comment
 * prefix, and an account of 80 characters and a host of 255, each up to four bytes a character, with
 * every backtick doubled.
 */
export const SCHEMA_LINE_LOOKAHEAD = 4096

const SLASH = 0x2f
const CAPITAL_C = 0x43
const CAPITAL_D = 0x44
const NEWLINE = 0x0a

/**
 * `sql`, a dump, with the start of each line where a schema statement may start passed through `map`
 * (as latin1, so that any bytes round-trip): `CREATE …`, `DROP …`, and MySQL's versioned comments
 * (`/*!50001 …`). Rows start with `(` or `INSERT`, and a newline in a value is written escaped, so no
 * line of data is looked at. Memory stays bounded whatever the dump's lines: a line is looked at only
 * as far as SCHEMA_LINE_LOOKAHEAD, and the rest of it passes through as it came.
 *
 * @yields The dump's bytes: each chunk as it came where `map` changed nothing in it.
 */
export async function* mapSchemaLines(sql: Readable, map: (lineStart: string) => string): AsyncGenerator<Buffer> {
  let held: Buffer | undefined
  let atLineStart = true
  for await (const input of sql as AsyncIterable<Buffer>) {
    const scanned = scan(held === undefined ? input : Buffer.concat([held, input]), atLineStart, map)
    ;({atLineStart, held} = scanned)
    yield* scanned.pieces
  }

  if (held !== undefined) yield Buffer.from(map(held.toString('latin1')), 'latin1')
}

interface Scanned {
  /** Whether the next chunk starts a line. */
  atLineStart: boolean
  /**
   * The start of a line that may start a schema statement, which the chunk ended in: a copy, since
   * the chunk may be lent and written over once passed on.
   */
  held?: Buffer
  /** What to pass on: the chunk itself when nothing in it changed, so that its lender can have it back. */
  pieces: Buffer[]
}

/** `chunk`, whose first byte starts a line if `atLineStart`, with its lines' starts mapped. */
function scan(chunk: Buffer, atLineStart: boolean, map: (lineStart: string) => string): Scanned {
  const pieces: Buffer[] = []
  let passed = 0
  let lineStart = atLineStart ? 0 : nextLine(chunk, 0)
  for (; lineStart !== -1 && lineStart < chunk.length; lineStart = nextLine(chunk, lineStart)) {
    const first = chunk[lineStart]
    if (first !== SLASH && first !== CAPITAL_C && first !== CAPITAL_D) continue
    const newline = chunk.indexOf(NEWLINE, lineStart)
    if (newline === -1 && chunk.length - lineStart < SCHEMA_LINE_LOOKAHEAD) {
      if (lineStart > passed) pieces.push(chunk.subarray(passed, lineStart))
      return {atLineStart: true, held: Buffer.from(chunk.subarray(lineStart)), pieces}
    }

    const headEnd = Math.min(newline === -1 ? chunk.length : newline, lineStart + SCHEMA_LINE_LOOKAHEAD)
    const head = chunk.toString('latin1', lineStart, headEnd)
    const replaced = map(head)
    if (replaced === head) continue
    if (lineStart > passed) pieces.push(chunk.subarray(passed, lineStart))
    pieces.push(Buffer.from(replaced, 'latin1'))
    passed = headEnd
  }

  if (passed === 0) pieces.push(chunk)
  else if (passed < chunk.length) pieces.push(chunk.subarray(passed))
  return {atLineStart: lineStart === chunk.length, pieces}
}

/** Where the line after the one at `from` starts, or -1 when the chunk ends in that line. */
function nextLine(chunk: Buffer, from: number): number {
  const newline = chunk.indexOf(NEWLINE, from)
  return newline === -1 ? -1 : newline + 1
}
