import {sqliteFacts} from '../../providers/database/facts.js'
import {sqliteEngine} from '../../providers/database/sqlite-engine.js'
import {ScratchDatabase} from './port.js'

/** The downloaded database file is the scratch copy: it lives in the drill's staging folder. */
export async function sqliteScratch(path: string, signal: AbortSignal): Promise<ScratchDatabase> {
  const engine = await sqliteEngine()
  const options = {signal}
  return {
    async close() {},
    facts: () => sqliteFacts(engine, path, options),
    async firstValue(sql) {
      const [first] = await engine.rows(path, sql, options)
      const value = first === undefined ? undefined : Object.values(first)[0]
      return value === undefined || value === null ? undefined : String(value)
    },
    async integrity() {
      const [row] = await engine.rows(path, 'PRAGMA integrity_check', options)
      return {result: String(Object.values(row ?? {})[0] ?? 'no answer'), tool: 'PRAGMA integrity_check'}
    },
    tools: {sqlite: engine.name},
  }
}
