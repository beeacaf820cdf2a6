import {createRequire} from 'node:module'

/** The part of an SQLite connection the tests use; better-sqlite3 and node:sqlite both provide it. */
export interface TestDatabase {
  close(): void
  exec(sql: string): void
  prepare(sql: string): {get(...parameters: unknown[]): unknown; run(...parameters: unknown[]): unknown}
}

const require = createRequire(import.meta.url)

/**
 * Opens an SQLite database for a test's fixtures and checks: better-sqlite3 where it is built for this
 * Node.js, else node:sqlite (Node 22), so that the suite runs on both without a compiler.
 */
export function openTestDatabase(path: string, options: {readonly?: boolean} = {}): TestDatabase {
  try {
    const Database = require('better-sqlite3') as new (path: string, options?: {readonly?: boolean}) => TestDatabase
    return new Database(path, {readonly: options.readonly ?? false})
  } catch (error) {
    const sqlite = (() => {
      try {
        return require('node:sqlite') as {
          DatabaseSync: new (path: string, options?: {readOnly?: boolean}) => TestDatabase
        }
      } catch {
        throw error
      }
    })()
    const database = new sqlite.DatabaseSync(path, {readOnly: options.readonly ?? false})
    return {
      close: () => database.close(),
      exec: (sql) => database.exec(sql),
      prepare(sql) {
        const statement = database.prepare(sql)
        // node:sqlite returns rows without a prototype; the tests compare them with plain objects.
        return {
          get: (...parameters) => ({...(statement.get(...parameters) as object)}),
          run: (...p) => statement.run(...p),
        }
      },
    }
  }
}
