import {createHash} from 'node:crypto'

import {DatabaseFacts} from '../../domain/manifest.js'
import {SqliteEngine} from './sqlite-engine.js'

/**
 * What a database held when it was dumped, recorded in the manifest so that a drill can compare the
 * restored copy with it: the rows of every table, and a hash of the schema. A dump that restores
 * without an error but lost a table's rows is caught only this way.
 */

/** SQLite's limit on the terms of one compound SELECT is 500 by default; the counts go in batches below it. */
const COUNTS_PER_QUERY = 400

/** The facts of the SQLite database file at `path`: exact, as it is a consistent copy nobody writes to. */
export async function sqliteFacts(
  engine: SqliteEngine,
  path: string,
  options: {signal?: AbortSignal},
): Promise<DatabaseFacts> {
  const schema = await engine.rows(
    path,
    "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
    options,
  )
  const tableNames = schema.filter((row) => row.type === 'table').map((row) => String(row.name))
  const tables: Record<string, number> = {}
  for (let start = 0; start < tableNames.length; start += COUNTS_PER_QUERY) {
    const batch = tableNames.slice(start, start + COUNTS_PER_QUERY)
    const sql = batch
      .map((name, index) => `SELECT ${start + index} AS i, count(*) AS n FROM ${quoteIdentifier(name)}`)
      .join(' UNION ALL ')
    for (const row of await engine.rows(path, sql, options)) tables[tableNames[Number(row.i)]] = Number(row.n)
  }

  return factsOf(
    tables,
    schema.map((row) => [row.type, row.name, row.tbl_name, row.sql ?? ''].map(String).join(' ')),
    'exact',
  )
}

/** Facts from per-table counts and the schema's statements, in any order. */
export function factsOf(
  tables: Record<string, number>,
  schemaStatements: readonly string[],
  counted: DatabaseFacts['counted'],
): DatabaseFacts {
  const sorted = Object.fromEntries(Object.entries(tables).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
  return {
    counted,
    rows: Object.values(sorted).reduce((sum, count) => sum + count, 0),
    schemaSha256: schemaHash(schemaStatements),
    tables: sorted,
  }
}

/**
 * The SHA-256 of a schema, normalised so that what does not change the schema does not change the
 * hash: whitespace runs are one space, and the statements are sorted.
 */
export function schemaHash(statements: readonly string[]): string {
  const normalised = statements
    .map((statement) => statement.replaceAll(/\s+/g, ' ').trim())
    .filter((statement) => statement !== '')
    .sort()
  return createHash('sha256').update(normalised.join('\n')).digest('hex')
}

/**
 * The statements of a `pg_dump --schema-only --no-owner --no-privileges` script that describe the
 * schema: comments, blank lines, session settings and the `\restrict` lines of newer releases (a random
 * key each run) are left out, so that the same schema always hashes the same.
 */
export function postgresSchemaStatements(script: string): string[] {
  const kept = script
    .split('\n')
    .filter((line) => !/^(--|SET |SELECT pg_catalog\.set_config\(|\\(un)?restrict )/.test(line))
    .join('\n')
  return kept.split(/;\s*\n/).filter((statement) => statement.trim() !== '')
}

/**
 * The statements of a `mariadb-dump --no-data --skip-comments` script that describe the schema: the
 * next AUTO_INCREMENT value of a table changes with its rows, not its schema, and is left out, as are
 * comments and the session settings around the statements.
 */
export function mysqlSchemaStatements(script: string): string[] {
  const kept = script
    .split('\n')
    .filter((line) => !/^(--|\/\*![0-9]{5} SET |SET |\/\*M!999999)/.test(line))
    .map((line) => line.replaceAll(/ AUTO_INCREMENT=\d+/g, ''))
    .join('\n')
  return kept.split(/;\s*\n/).filter((statement) => statement.trim() !== '')
}

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
