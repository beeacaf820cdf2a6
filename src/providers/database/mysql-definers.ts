import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

/**
 * The account a dump names as the definer of each trigger, view, routine and event
 * (`DEFINER=`live`@`10.0.0.5``) becomes `CURRENT_USER`: the user who restores, as PostgreSQL's
 * `pg_restore --no-owner` gives every object to the user who restores.
 *
 * Why: naming another account as a definer takes the SUPER or SET USER privilege, which an app's own
 * database user does not have. A restore into another environment (live's dump, test's user) or onto
 * a new server stopped at the first trigger with "Access denied; you need (at least one of) the SUPER,
 * SET USER privilege(s)", after the tables and rows were in. An object that kept a definer of another
 * environment would also run with that account's privileges, or fail when it does not exist there.
 *
 * Only the first lines of statements that mariadb-dump and mysqldump write for these objects are
 * rewritten, and only at their start: rows are written one statement (or one row) a line, with every
 * newline in a value escaped, so no line of data begins like one of these.
 */
const DEFINER_CLAUSE =
  /^(?<start>\/\*!50003 CREATE\*\/ \/\*!50017 |\/\*!50106 CREATE\*\/ \/\*!50117 |CREATE |\/\*!50013 |\/\*!50001 CREATE ALGORITHM=[A-Z]+ )DEFINER=(?<account>`(?:[^`]|``)*`(?:@`(?:[^`]|``)*`)?|CURRENT_USER(?:\(\))?)/

/**
 * The same rewrite with the stock tools, for restoring an exported dump by hand (`sed … | mysql`):
 * the export's README and docs/restore.md give it, and a test holds it to the stream's.
 */
export const DEFINERS_SED =
  "LC_ALL=C sed -E '/^(\\/\\*!50003 CREATE\\*\\/ \\/\\*!50017 |\\/\\*!50106 CREATE\\*\\/ \\/\\*!50117 |CREATE |\\/\\*!50013 |\\/\\*!50001 CREATE ALGORITHM=[A-Z]+ )DEFINER=/s/DEFINER=(`([^`]|``)*`(@`([^`]|``)*`)?|CURRENT_USER(\\(\\))?)/DEFINER=CURRENT_USER/'"

/**
 * How far into a line its definer can be: the longest prefix above, and an account of 80 characters
 * and a host of 255, each up to four bytes a character, with every backtick doubled.
 */
export const DEFINER_LOOKAHEAD = 4096

const SLASH = 0x2f
const CAPITAL_C = 0x43
const NEWLINE = 0x0a

/** `line` (its start, in latin1 so that any bytes round-trip) with its definer as CURRENT_USER. */
export function definerAsCurrentUser(line: string): string {
  return line.replace(DEFINER_CLAUSE, '$<start>DEFINER=CURRENT_USER')
}

/**
 * Every account a dump names as a definer, as it names it (`` `shop`@`10.0.0.5` ``, or a MariaDB role,
 * `` `editors` ``): quoted identifiers, which SQL can take as they are. A drill's scratch server makes
 * them, so that the objects work there as they did where the dump was taken: a view whose definer does
 * not exist cannot be read, nor dumped ("The user specified as a definer does not exist").
 */
export async function definersIn(sql: Readable): Promise<string[]> {
  const accounts = new Set<string>()
  const noted = (line: string) => {
    const account = DEFINER_CLAUSE.exec(line)?.groups?.account
    if (account !== undefined && !account.startsWith('CURRENT_USER')) accounts.add(account)
    return line
  }

  await pipeline(rewritten(sql as AsyncIterable<Buffer>, noted), new PassThrough().resume())
  return [...accounts].map((account) => Buffer.from(account, 'latin1').toString())
}

/**
 * `sql`, a dump, with every definer as CURRENT_USER (see above); all other bytes as they came. Memory
 * stays bounded whatever the dump's lines: a line is looked at only as far as its definer can be.
 */
export function withDefinersAsCurrentUser(sql: Readable): Readable {
  return Readable.from(rewritten(sql as AsyncIterable<Buffer>, definerAsCurrentUser), {objectMode: false})
}

// `sql` with the start of each line that may name a definer (its first look-ahead) through `rewrite`.
async function* rewritten(sql: AsyncIterable<Buffer>, rewrite: (line: string) => string): AsyncGenerator<Buffer> {
  let held: Buffer | undefined
  let atLineStart = true
  for await (const input of sql) {
    const scanned = scan(held === undefined ? input : Buffer.concat([held, input]), atLineStart, rewrite)
    ;({atLineStart, held} = scanned)
    yield* scanned.pieces
  }

  if (held !== undefined) yield Buffer.from(rewrite(held.toString('latin1')), 'latin1')
}

interface Scanned {
  /** Whether the next chunk starts a line. */
  atLineStart: boolean
  /**
   * The start of a line that may hold a definer, which the chunk ended in: a copy, since the chunk may
   * be lent and written over once passed on.
   */
  held?: Buffer
  /** What to pass on: the chunk itself when nothing in it changed, so that its lender can have it back. */
  pieces: Buffer[]
}

/** `chunk`, whose first byte starts a line if `atLineStart`, with the definers at its lines' starts rewritten. */
function scan(chunk: Buffer, atLineStart: boolean, rewrite: (line: string) => string): Scanned {
  const pieces: Buffer[] = []
  let passed = 0
  let lineStart = atLineStart ? 0 : nextLine(chunk, 0)
  for (; lineStart !== -1 && lineStart < chunk.length; lineStart = nextLine(chunk, lineStart)) {
    if (chunk[lineStart] !== SLASH && chunk[lineStart] !== CAPITAL_C) continue
    const newline = chunk.indexOf(NEWLINE, lineStart)
    if (newline === -1 && chunk.length - lineStart < DEFINER_LOOKAHEAD) {
      if (lineStart > passed) pieces.push(chunk.subarray(passed, lineStart))
      return {atLineStart: true, held: Buffer.from(chunk.subarray(lineStart)), pieces}
    }

    const headEnd = Math.min(newline === -1 ? chunk.length : newline, lineStart + DEFINER_LOOKAHEAD)
    const head = chunk.toString('latin1', lineStart, headEnd)
    const replaced = rewrite(head)
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
