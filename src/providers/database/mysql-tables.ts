/**
 * The tables, views and sequences a MySQL/MariaDB dump creates, as its schema lines name them:
 * `CREATE TABLE `t` (`, a view's stand-in (`/*!50001 CREATE VIEW `v` AS SELECT`, or a table of the
 * same name, by older dump tools) and `CREATE SEQUENCE `s``.
 *
 * Why: a restore replays the dump, which drops and creates only what it holds. A table that a
 * migration added after the backup stayed beside the restored ones, and the app's own record of its
 * migrations, restored, no longer told it (Django's `migrate` then stops at "Table 'loyalty' already
 * exists"). Once the whole dump is in, the restore drops whatever the dump did not create.
 */
const CREATED = /^(?:CREATE TABLE |CREATE SEQUENCE |\/\*!50001 CREATE VIEW )`((?:[^`]|``)+)`/

/** The name a dump's line creates (its start, as latin1), or undefined. */
export function createdName(lineStart: string): string | undefined {
  const quoted = CREATED.exec(lineStart)?.[1]
  return quoted === undefined ? undefined : Buffer.from(quoted.replaceAll('``', '`'), 'latin1').toString()
}

/** The statement that drops `extra`, tables and views by the names `information_schema` gives. */
export function dropStatement(extra: ReadonlyArray<{name: string; type: string}>): string {
  const views = extra.filter(({type}) => type === 'VIEW').map(({name}) => name)
  const tables = extra.filter(({type}) => type !== 'VIEW').map(({name}) => name)
  return [
    // Another table's foreign key may refer to one of these; all of them go.
    'SET FOREIGN_KEY_CHECKS = 0',
    ...(views.length > 0 ? [`DROP VIEW IF EXISTS ${quotedList(views)}`] : []),
    // A sequence is dropped as a table too (MariaDB).
    ...(tables.length > 0 ? [`DROP TABLE IF EXISTS ${quotedList(tables)}`] : []),
  ].join('; ')
}

function quotedList(names: string[]): string {
  return names.map((name) => `\`${name.replaceAll('`', '``')}\``).join(', ')
}
