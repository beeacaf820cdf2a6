import {DatabaseFacts} from '../domain/manifest.js'
import {DrillCheck} from './receipt.js'

/**
 * What a restored database holds against what the manifest says it held when it was dumped: every
 * table's rows, and the schema. Each difference is named, so that a failed drill says what to look at.
 */
export function compareFacts(recorded: DatabaseFacts, restored: DatabaseFacts): DrillCheck[] {
  const differences: string[] = []
  for (const [table, rows] of Object.entries(recorded.tables)) {
    const found = restored.tables[table]
    if (found === undefined) differences.push(`table ${table} is missing (it had ${rows} rows)`)
    else if (found !== rows) differences.push(`${table} has ${found} rows, not ${rows}`)
  }

  for (const table of Object.keys(restored.tables)) {
    if (recorded.tables[table] === undefined) differences.push(`table ${table} was not in the database`)
  }

  const tables = Object.keys(recorded.tables).length
  const rowCheck: DrillCheck = {
    detail:
      differences.length === 0
        ? `${tables} tables, ${recorded.rows} rows, as recorded${recorded.counted === 'approximate' ? ' (approximately)' : ''}`
        : `${differences.slice(0, 5).join('; ')}${differences.length > 5 ? `; and ${differences.length - 5} more` : ''}`,
    name: 'row counts',
    // Approximate counts (MySQL) are compared for the tables, not the rows: they could not share the dump's snapshot.
    ok:
      recorded.counted === 'approximate'
        ? !differences.some((text) => text.startsWith('table '))
        : differences.length === 0,
  }
  const schemaCheck: DrillCheck = {
    detail:
      recorded.schemaSha256 === restored.schemaSha256
        ? 'the schema hashes as recorded'
        : 'the schema differs from the one recorded when the backup was taken',
    name: 'schema',
    ok: recorded.schemaSha256 === restored.schemaSha256,
  }
  return [rowCheck, schemaCheck]
}
