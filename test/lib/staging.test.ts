import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {makeStagingDir, STAGING_PURPOSES, sweepStaleStaging} from '../../src/lib/staging.js'

describe('staging folders', () => {
  it('a folder of every purpose is swept once its process is gone, and kept while it runs', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'staging-sweep-'))
    try {
      // A pid that no longer runs: a process that has exited.
      const gone = spawnSync(process.execPath, ['-e', '0']).pid!
      const alive: string[] = []
      for (const purpose of STAGING_PURPOSES) {
        mkdirSync(join(parent, `divio-${purpose}-${gone}-abc123`))
        alive.push((await makeStagingDir(parent, purpose)).slice(parent.length + 1))
      }

      const removed = await sweepStaleStaging(parent)
      expect(removed).to.have.length(STAGING_PURPOSES.length)
      expect(readdirSync(parent).sort()).to.deep.equal(alive.sort())
    } finally {
      rmSync(parent, {force: true, recursive: true})
    }
  })
})
