/**
 * The tables, views and sequences a MySQL/MariaDB dump holds, as its schema lines name them: each is
 * dropped (`DROP TABLE IF EXISTS `t``, `/*!50001 DROP VIEW IF EXISTS `v`*\/`) and then created
 * (`CREATE TABLE `t` (`, a view's stand-in `/*!50001 CREATE VIEW `v` AS SELECT`, or by older dump
 * tools `/*!50001 CREATE TABLE `v` (`, then the view itself, `/*!50001 VIEW `v` AS`, and
 * `CREATE SEQUENCE `s``). A name any of them gives is the dump's: each object is named by two lines
 * at least, so that one written in a form this does not know cannot alone get an object of the dump's
 * dropped.
 *
 * Why: a restore replays the dump, which drops and creates only what it holds. A table that a
 * migration added after the backup stayed beside the restored ones, and the app's own record of its
 * migrations, restored, no longer told it (Django's `migrate` then stops at "Table 'loyalty' already
 * exists"). Once the whole dump is in, the restore drops what is not the dump's.
 */
const NAMED =
  /^(?:DROP TABLE IF EXISTS |DROP SEQUENCE IF EXISTS |CREATE TABLE |CREATE SEQUENCE |\/\*!50001 (?:DROP VIEW IF EXISTS |DROP TABLE IF EXISTS |CREATE VIEW |CREATE TABLE |VIEW ))`((?:[^`]|``)+)`/

/** The table, view or sequence a dump's line drops or creates (its start, as latin1), or undefined. */
export function dumpedName(lineStart: string): string | undefined {
  const quoted = NAMED.exec(lineStart)?.[1]
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
