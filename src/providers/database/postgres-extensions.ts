import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

/**
 * Extensions in a restore's target that another role owns: an administrator created them there (the
 * platform, for `pg_trgm` or `postgis`), and the app's user may use them but not drop or comment on
 * them. A dump lists each extension it holds with a `COMMENT ON EXTENSION`, and `--clean` drops it
 * first: replayed as that user, into a database like that (another environment's, a new server's),
 * the whole restore failed with "must be owner of extension pg_trgm".
 *
 * The restore leaves those extensions as they are: their entries (the extension, and the comment on
 * it) are taken out of the list that pg_restore restores (`--use-list`), and what uses them (an index
 * of `gin_trgm_ops`, a column of PostGIS's types) is restored as usual. A superuser may drop anything,
 * and is given none.
 */
export const EXTENSIONS_NOT_OURS =
  "SELECT extname FROM pg_extension WHERE NOT pg_has_role(current_user, extowner, 'USAGE') ORDER BY 1"

/**
 * The entries of `pg_restore --list` output to restore: all but the extensions named in `kept`, and
 * the comments on them. An entry's line is `ID; TABLEOID OID TYPE SCHEMA NAME OWNER`, where an
 * extension's schema is `-` and its owner blank, and a comment's name is `EXTENSION <name>`, quoted
 * as an identifier where it needs to be (`EXTENSION "uuid-ossp"`).
 */
export function restoreListWithout(list: string, kept: ReadonlySet<string>): string {
  return list
    .split('\n')
    .filter((line) => {
      const entry = /^\d+; \d+ \d+ (?:EXTENSION - |COMMENT - EXTENSION )("(?:[^"]|"")+"|\S+)(?: \S*)?$/.exec(line)
      return !entry || !kept.has(unquoted(entry[1]))
    })
    .join('\n')
}

function unquoted(name: string): string {
  return name.startsWith('"') ? name.slice(1, -1).replaceAll('""', '"') : name
}

/** Writes the list for `--use-list` into `folder` (private: it names the database's objects). */
export async function writeRestoreList(folder: string, list: string): Promise<string> {
  const path = join(folder, `pg-restore-list-${process.pid}-${Date.now()}.txt`)
  await writeFile(path, list, {flag: 'wx', mode: 0o600})
  return path
}
