import {accessSync, chmodSync, constants, mkdtempSync, readdirSync, rmSync, statfsSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {isRunning} from '../src/lib/staging.js'

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
//
// A run killed before its end (SIGKILL, a CI job cancelled) cannot remove its folder: the folder's name
// holds its maker's pid, and the next run removes the folders of makers that are gone, which in memory
// would otherwise stay until the next boot.
const inherited = process.env.DIVIO_TEST_RUN_FOLDER
const RUN_FOLDER = /^divio-tests-(\d+)-/
const SHARED_MEMORY = '/dev/shm'
const runFolder = inherited ?? makeRunFolder()
process.env.DIVIO_TEST_RUN_FOLDER = runFolder
process.env.TMPDIR = runFolder

function makeRunFolder(): string {
  // Both places, before the free space that picks one is measured.
  for (const parent of new Set([SHARED_MEMORY, tmpdir()])) removeRunsGone(parent)
  const folder = mkdtempSync(join(runFolderParent(), `divio-tests-${process.pid}-`))
  chmodSync(folder, 0o755)
  return folder
}

/** /dev/shm when it is writable and has 8 GiB free (the suite's files at their peak, with room to spare). */
function runFolderParent(): string {
  try {
    accessSync(SHARED_MEMORY, constants.W_OK)
    const {bavail, bsize} = statfsSync(SHARED_MEMORY)
    if (bavail * bsize >= 8 * 1024 ** 3) return SHARED_MEMORY
  } catch {}

  return tmpdir()
}

/** Removes the run folders in `parent` whose maker is no longer running (see above). */
export function removeRunsGone(parent: string): void {
  let names: string[]
  try {
    names = readdirSync(parent)
  } catch {
    return
  }

  for (const name of names) {
    const maker = RUN_FOLDER.exec(name)?.[1]
    if (maker !== undefined && !isRunning(Number(maker))) rmSync(join(parent, name), {force: true, recursive: true})
  }
}

export function mochaGlobalTeardown(): void {
  if (inherited !== undefined) return
  if (process.env.KEEP_TEST_FILES) console.log(`  test files kept in ${runFolder}`)
  else rmSync(runFolder, {force: true, recursive: true})
}
