import {Readable} from 'node:stream'

/**
 * A PostgreSQL restore replaces the tables, views and sequences the restoring user owns, not only those
 * the backup holds. `pg_restore --clean` drops only what the archive lists: a table that a migration
 * added after the backup stayed, and where it referred to a restored table (a foreign key, a view), the
 * restore of the backup taken before the migration failed whole ("cannot drop constraint
 * customers_pkey on table public.customers because other objects depend on it"). That is the restore
 * users need most, on the day a migration went wrong.
 *
 * So the restore runs as one script in one transaction: this statement, which drops every table, view,
 * materialized view, foreign table and sequence that the user's role owns (or a member's, which is
 * every one for a superuser), outside the system's and the extensions' own; then what `pg_restore`
 * writes for the archive. Sequences that belong to a column go with their table. Functions, types and
 * schemas that the backup does not hold stay (nothing of the backup's depends on them); so does
 * whatever another role owns, which this user could not drop.
 *
 * It first sets the session's timeouts as pg_restore's script does for its own statements, after it:
 * a timeout that the database or the role sets (platforms set `lock_timeout` for apps) would end the
 * drops early, with "canceling statement due to lock timeout", where the restore's own lock watch is
 * what bounds a wait, and names who holds the lock.
 */
export const DROP_OWN_RELATIONS = `SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
DO $divio_backup$
DECLARE
  relation record;
BEGIN
  FOR relation IN
    SELECT format('%I.%I', n.nspname, c.relname) AS name,
           CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                          WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
      AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (
        SELECT FROM pg_catalog.pg_depend d
        WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype IN ('a', 'e', 'i'))
    ORDER BY c.oid
  LOOP
    -- IF EXISTS: a table dropped with another one before it (a partition, a view over it) is gone already.
    EXECUTE format('DROP %s IF EXISTS %s CASCADE', relation.kind, relation.name);
  END LOOP;
END
$divio_backup$;
`

/**
 * The line that tells psql to run no meta-command (`\!`, `\copy`, …) until the random key that ends it:
 * pg_restore writes it at the top of every script since the fix of CVE-2025-8714 (PostgreSQL 17.6,
 * 16.10, 15.14, 14.19, 13.22), so that nothing a database holds can run a command on the machine that
 * replays its dump. A script without it is not replayed through psql.
 */
const RESTRICT_LINE = /^\\restrict [0-9A-Za-z]+$/m

/** How far into a script `pg_restore --single-transaction` writes its BEGIN: after the header. */
const HEAD_WITHIN = 16 * 1024

/**
 * How much of the script's end is held back until pg_restore has exited 0: its COMMIT, and the footer
 * after it (a comment and the `\unrestrict` line).
 */
const TAIL_HELD = 4096

export interface RestoreScript {
  /** Why the script was cut short (pg_restore failed), once psql has read it to its end. */
  cutShort(): unknown
  script: Readable
}

/**
 * The script for psql: `pg_restore --single-transaction --file=-`'s output, with the drop above right
 * after its BEGIN; or undefined where that output does not restrict psql first (an older pg_restore),
 * which the caller restores the archive's way instead.
 *
 * Nothing commits a part: the script's last bytes, its COMMIT among them, are passed on only once
 * pg_restore has exited 0 (its stream ends only then). Where it fails, the script ends there instead,
 * without its COMMIT, and psql's session ends with the transaction rolled back; `cutShort` then says
 * why.
 */
export async function restoreScript(pgRestoreOutput: Readable): Promise<RestoreScript | undefined> {
  const iterator = pgRestoreOutput[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let head = Buffer.alloc(0)
  let begin = -1
  while (begin === -1 && head.length < HEAD_WITHIN) {
    const next = await iterator.next()
    if (next.done) break
    head = Buffer.concat([head, next.value])
    begin = head.indexOf('\nBEGIN;\n')
  }

  if (begin === -1 || !RESTRICT_LINE.test(head.subarray(0, begin).toString('latin1'))) {
    pgRestoreOutput.destroy()
    return undefined
  }

  let failure: unknown
  const afterBegin = begin + '\nBEGIN;\n'.length
  async function* script(): AsyncGenerator<Buffer> {
    yield head.subarray(0, afterBegin)
    yield Buffer.from(DROP_OWN_RELATIONS)
    let held: Buffer = head.subarray(afterBegin)
    try {
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
        const chunk = next.value
        if (chunk.length >= TAIL_HELD) {
          if (held.length > 0) yield held
          yield chunk.subarray(0, chunk.length - TAIL_HELD)
          held = Buffer.from(chunk.subarray(chunk.length - TAIL_HELD))
        } else {
          held = Buffer.concat([held, chunk])
          if (held.length > TAIL_HELD) {
            yield held.subarray(0, held.length - TAIL_HELD)
            held = Buffer.from(held.subarray(held.length - TAIL_HELD))
          }
        }
      }
    } catch (error) {
      failure = error
      return
    }

    if (!/^COMMIT;$/m.test(held.toString('latin1'))) {
      failure = new Error('pg_restore wrote no COMMIT at the end of its script')
      return
    }

    yield held
  }

  return {cutShort: () => failure, script: Readable.from(script(), {objectMode: false})}
}
