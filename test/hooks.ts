import {accessSync, chmodSync, constants, mkdtempSync, rmSync, statfsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

// Every temp folder of a run (projects, stores, servers, the CLI's own staging) goes into one folder,
// removed when the run ends: the suite writes a few GB, which must not pile up on the machine.
// KEEP_TEST_FILES=1 keeps it for inspection. Servers run as other users, so it must be traversable.
//
// The folder is made by the first process that loads this file: mocha's own, which then starts the
// workers of a parallel run; they inherit it through the environment. Only the maker removes it, once
// the whole run is over (a global fixture, which runs once in either mode; root hooks run per file).
//
// It is made in memory (/dev/shm) where there is room: the database servers, the stores and the
// commands flush to disk at every step that must survive a power cut, and what the tests check does
// not depend on a disk; on a virtual disk those flushes made a fifth of the database tests' time.
const inherited = process.env.DIVIO_TEST_RUN_FOLDER
const runFolder = inherited ?? mkdtempSync(join(runFolderParent(), 'divio-tests-'))
if (inherited === undefined) {
  chmodSync(runFolder, 0o755)
  process.env.DIVIO_TEST_RUN_FOLDER = runFolder
}

process.env.TMPDIR = runFolder

/** /dev/shm when it is writable and has 8 GiB free (the suite's files at their peak, with room to spare). */
function runFolderParent(): string {
  try {
    accessSync('/dev/shm', constants.W_OK)
    const {bavail, bsize} = statfsSync('/dev/shm')
    if (bavail * bsize >= 8 * 1024 ** 3) return '/dev/shm'
  } catch {}

  return tmpdir()
}

export function mochaGlobalTeardown(): void {
  if (inherited !== undefined) return
  if (process.env.KEEP_TEST_FILES) console.log(`  test files kept in ${runFolder}`)
  else rmSync(runFolder, {force: true, recursive: true})
}
