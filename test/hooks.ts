import {chmodSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

// Every temp folder of a run (projects, stores, servers, the CLI's own staging) goes into one folder,
// removed when the run ends: the suite writes a few GB, which must not pile up on the machine.
// KEEP_TEST_FILES=1 keeps it for inspection. Servers run as other users, so it must be traversable.
const runFolder = mkdtempSync(join(tmpdir(), 'divio-tests-'))
chmodSync(runFolder, 0o755)
process.env.TMPDIR = runFolder

export const mochaHooks = {
  afterAll(): void {
    if (process.env.KEEP_TEST_FILES) console.log(`  test files kept in ${runFolder}`)
    else rmSync(runFolder, {force: true, recursive: true})
  },
}
