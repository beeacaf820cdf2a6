import {expect} from 'chai'
import {execFileSync, spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {STAGING_PURPOSES} from '../../src/lib/staging.js'
import {firstOutput} from '../helpers/processes.js'
import {repoRoot} from '../helpers/project.js'

/**
 * startStopDeadline, seen from outside: a process whose thread waits for good in the kernel (the open
 * of a FIFO that no one writes) cannot exit by itself; its watchdog ends it with the signal once the
 * grace period is over, then removes its staging folders, and only its own.
 */
describe('the stop deadline', () => {
  it('ends a process stuck in the kernel by the signal, then removes its staging folders and no others', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'stop-deadline-'))
    try {
      const fifo = join(parent, 'stuck')
      execFileSync('mkfifo', [fifo])
      const others = ['divio-backup-1-2-3-abcdef', 'divio-restore-apply-999999-1-1-zzzzzz', 'unrelated']
      for (const name of others) mkdirSync(join(parent, name))
      const script = join(parent, 'stuck.mts')
      const source = (name: string) => JSON.stringify(join(repoRoot, 'src', 'lib', name))
      writeFileSync(
        script,
        [
          `import {readFile} from 'node:fs/promises'`,
          `import {startStopDeadline} from ${source('guards.ts')}`,
          `import {makeStagingDir, ownStagingTag, STAGING_PURPOSES} from ${source('staging.ts')}`,
          `const root = ${JSON.stringify(parent)}`,
          `for (const purpose of STAGING_PURPOSES) await makeStagingDir(root, purpose)`,
          `startStopDeadline('SIGTERM', 1000, {root, tag: ownStagingTag()})`,
          `process.stdout.write('ready\\n')`,
          // Held in open(2) on a thread of the pool: process.exit() would wait for it too.
          `await readFile(${JSON.stringify(fifo)})`,
        ].join('\n'),
      )
      const child = spawn(process.execPath, ['--import', 'tsx', script], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      const ended = new Promise<NodeJS.Signals | null>((resolve) => {
        child.on('exit', (_code, signal) => resolve(signal))
      })
      await firstOutput(child)
      expect(readdirSync(parent)).to.have.length(others.length + STAGING_PURPOSES.length + 2)

      expect(await ended, 'ended by the signal, which nothing in it handles').to.equal('SIGTERM')
      const deadline = Date.now() + 30_000
      while (readdirSync(parent).length > others.length + 2 && Date.now() < deadline) await sleep(20)
      expect(readdirSync(parent).sort(), 'its own folders removed, every other one kept').to.deep.equal(
        [...others, 'stuck', 'stuck.mts'].sort(),
      )
    } finally {
      rmSync(parent, {force: true, recursive: true})
    }
  })
})
