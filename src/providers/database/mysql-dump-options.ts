/**
 * What MySQL's own `mysqldump` needs to write a dump that any user can restore, on any server; MariaDB's
 * `mariadb-dump` (also installed as `mysqldump`) needs none of it.
 *
 * - `--set-gtid-purged=OFF`: from a server with GTIDs on (managed MySQL often has them), mysqldump
 *   writes `SET @@SESSION.SQL_LOG_BIN = 0` and `SET @@GLOBAL.GTID_PURGED = …` into the dump. Only a
 *   user with SUPER (or SYSTEM_VARIABLES_ADMIN) may run them, and the second fails on any server that
 *   has run transactions of its own: a restore into another environment, or onto a new server, stops
 *   there. A backup is for restoring data, not for seeding a replica.
 * - `--column-statistics=0`: mysqldump 8 and later read `information_schema.COLUMN_STATISTICS`, which
 *   MariaDB and MySQL 5.7 lack ("Unknown table 'COLUMN_STATISTICS' in information_schema"): without
 *   it, such a server cannot be dumped at all. A MySQL 8 server keeps its histograms in the dump.
 *
 * `toolVersion` is the tool's `--version`, `serverVersion` what `SELECT VERSION()` answers.
 */
export function mysqldumpOptions(toolVersion: string, serverVersion: string): string[] {
  if (/mariadb/i.test(toolVersion)) return []
  const tool = versionIn(toolVersion, /Distrib (\d+)\.(\d+)/) ?? versionIn(toolVersion, /Ver (\d+)\.(\d+)/)
  if (tool === undefined) return []
  const options = atLeast(tool, [5, 6]) ? ['--set-gtid-purged=OFF'] : []
  const server = /mariadb/i.test(serverVersion) ? undefined : versionIn(serverVersion, /^(\d+)\.(\d+)/)
  if (atLeast(tool, [8, 0]) && !(server && atLeast(server, [8, 0]))) options.push('--column-statistics=0')
  return options
}

type Version = [major: number, minor: number]

function versionIn(text: string, pattern: RegExp): undefined | Version {
  const match = pattern.exec(text)
  return match ? [Number(match[1]), Number(match[2])] : undefined
}

function atLeast([major, minor]: Version, [atLeastMajor, atLeastMinor]: Version): boolean {
  return major > atLeastMajor || (major === atLeastMajor && minor >= atLeastMinor)
}
