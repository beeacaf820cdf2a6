import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {removeRunsGone} from './hooks.js'

describe("the test run's folder", function () {
  it('a run removes the folders of runs whose maker is gone, and keeps those of runs still going', () => {
    const parent = mkdtempSync(join(tmpdir(), 'run-folders-'))
    // A pid that was a process a moment ago and is no longer one.
    const gone = spawnSync('sh', ['-c', 'echo $$'], {encoding: 'utf8'}).stdout.trim()
    const names = [
      `divio-tests-${gone}-AbC123`,
      `divio-tests-${process.pid}-XyZ789`,
      // Not a run folder of this kind: never touched.
      'divio-tests-Q1w2e3',
      `divio-backup-test-${gone}`,
    ]
    for (const name of names) {
      mkdirSync(join(parent, name, 'project', 'media'), {recursive: true})
      writeFileSync(join(parent, name, 'project', 'media', 'photo.jpg'), 'bytes')
    }

    removeRunsGone(parent)
    expect(readdirSync(parent).sort()).to.deep.equal(names.slice(1).sort())
  })
})
