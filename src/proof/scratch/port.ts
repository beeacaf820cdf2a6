import {DatabaseFacts} from '../../domain/manifest.js'

/**
 * A database restored into scratch for a drill: a temp SQLite file, or a throwaway PostgreSQL server.
 * Never the environment's own database. `close` removes every trace on every exit path; after a
 * SIGKILL, a guard process (or the next command's sweep of staging folders) does.
 */
export interface ScratchDatabase {
  close(): Promise<void>
  /** Rows and schema, counted as the backup counted them. */
  facts(): Promise<DatabaseFacts>
  /** The first value of the first row of `sql`, or undefined for none (or NULL). */
  firstValue(sql: string): Promise<string | undefined>
  /** The engine's own check of the restored copy: its name, and 'ok' or what it found; undefined where unavailable. */
  integrity(): Promise<undefined | {result: string; tool: string}>
  /** The engine and its tools, with versions, for the receipt. */
  readonly tools: Record<string, string>
}
