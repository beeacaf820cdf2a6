import {chmodSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

// Every temp folder of a run (projects, stores, servers, the CLI's own staging) goes into one folder,
// removed when the run ends: the suite writes a few GB, which must not pile up on the machine.
// KEEP_TEST_FILES=1 keeps it for inspection. Servers run as other users, so it must be traversable.
//
// The folder is made by the first process that loads this file: mocha's own, which then starts the
// workers of a parallel run; they inherit it through the environment. Only the maker removes it, once
// the whole run is over (a global fixture, which runs once in either mode; root hooks run per file).
const inherited = process.env.DIVIO_TEST_RUN_FOLDER
const runFolder = inherited ?? mkdtempSync(join(tmpdir(), 'divio-tests-'))
if (inherited === undefined) {
  chmodSync(runFolder, 0o755)
  process.env.DIVIO_TEST_RUN_FOLDER = runFolder
}

process.env.TMPDIR = runFolder

export function mochaGlobalTeardown(): void {
  if (inherited !== undefined) return
  if (process.env.KEEP_TEST_FILES) console.log(`  test files kept in ${runFolder}`)
  else rmSync(runFolder, {force: true, recursive: true})
}
