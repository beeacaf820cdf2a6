import {PassThrough, Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {mapSchemaLines} from './dump-schema-lines.js'

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

  await pipeline(mapSchemaLines(sql, noted), new PassThrough().resume())
  return [...accounts].map((account) => Buffer.from(account, 'latin1').toString())
}
