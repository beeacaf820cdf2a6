import {expect} from 'chai'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {basename, dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {BackupError} from '../../src/errors.js'
import {makeStagingDir, STAGING_PURPOSES, sweepStaleStaging, tempFolderError} from '../../src/lib/staging.js'
import {firstOutput} from '../helpers/processes.js'
import {repoRoot} from '../helpers/project.js'

const DAY = 24 * 3_600_000
const namespace = /\[(\d+)]/.exec(readlinkSync('/proc/self/ns/pid'))![1]

/** Field 22 of /proc/<pid>/stat: the process's start time. */
function startTimeOf(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

function withParent(run: (parent: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const parent = mkdtempSync(join(tmpdir(), 'staging-sweep-'))
    try {
      await run(parent)
    } finally {
      rmSync(parent, {force: true, recursive: true})
    }
  }
}

function canUnshare(): boolean {
  return spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0
}

/** Runs `code` (a module body that may use sweepStaleStaging and makeStagingDir) in a new pid namespace. */
function inNewPidNamespace(code: string): string {
  const script = join(mkdtempSync(join(tmpdir(), 'staging-ns-')), 'run.mts')
  writeFileSync(
    script,
    `import {makeStagingDir, ownStagingTag, sweepStaleStaging} from ${JSON.stringify(join(repoRoot, 'src', 'lib', 'staging.ts'))}\n${code}\n`,
  )
  try {
    return execFileSync('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '--import', 'tsx', script], {
      cwd: repoRoot,
      encoding: 'utf8',
    })
  } finally {
    rmSync(join(script, '..'), {force: true, recursive: true})
  }
}

describe('staging folders', () => {
  it(
    'a folder of every purpose is swept once its process is gone, and kept while it runs',
    withParent(async (parent) => {
      // A pid that no longer runs: a process that has exited.
      const gone = spawnSync(process.execPath, ['-e', '0']).pid!
      const alive: string[] = []
      for (const purpose of STAGING_PURPOSES) {
        mkdirSync(join(parent, `divio-${purpose}-${gone}-${namespace}-12345-abc123`))
        alive.push((await makeStagingDir(parent, purpose)).slice(parent.length + 1))
      }

      const removed = await sweepStaleStaging(parent)
      expect(removed).to.have.length(STAGING_PURPOSES.length)
      expect(readdirSync(parent).sort()).to.deep.equal(alive.sort())
      // Its name says which process, in which pid namespace, started when.
      expect(alive[0]).to.match(new RegExp(`^divio-backup-${process.pid}-${namespace}-${startTimeOf(process.pid)}-`))
    }),
  )

  it(
    'a folder whose pid now belongs to a younger process follows the age rule, plaintext and all',
    withParent(async (parent) => {
      const other = spawn('sleep', ['60'])
      try {
        const reused = join(parent, `divio-backup-${other.pid}-${namespace}-1-abc123`)
        const owned = join(parent, `divio-backup-${other.pid}-${namespace}-${startTimeOf(other.pid!)}-def456`)
        for (const folder of [reused, owned]) {
          mkdirSync(folder)
          writeFileSync(join(folder, 'snapshot.sqlite3'), 'plaintext')
        }

        expect(await sweepStaleStaging(parent)).to.deep.equal([])
        // A day on, by the sweep's clock: the reused pid's folder goes; the live process's stays.
        expect(await sweepStaleStaging(parent, Date.now() + DAY + 60_000)).to.deep.equal([reused])
      } finally {
        other.kill()
      }
    }),
  )

  it(
    'a sweep in another pid namespace leaves a running process’s folder alone, and the age rule takes what it cannot judge',
    withParent(async function (this: Mocha.Context, parent) {
      if (!canUnshare()) this.skip()
      // This process is alive, but its pid means nothing in the new namespace.
      const live = await makeStagingDir(parent, 'backup')
      writeFileSync(join(live, 'snapshot.sqlite3'), 'plaintext')
      const removedThere = inNewPidNamespace(
        `console.log(JSON.stringify(await sweepStaleStaging(${JSON.stringify(parent)}, Date.now())))`,
      )
      expect(JSON.parse(removedThere)).to.deep.equal([])
      expect(readdirSync(live)).to.deep.equal(['snapshot.sqlite3'])

      // The reverse: a process of another namespace made a folder and is gone. This side cannot tell.
      // (Named by that process, made here: its own folder's guard would remove it as it ends.)
      const foreign = join(parent, `divio-restore-${inNewPidNamespace('console.log(ownStagingTag())').trim()}-abc123`)
      mkdirSync(foreign)
      expect(foreign).to.not.include(`-${namespace}-`)
      expect(await sweepStaleStaging(parent)).to.deep.equal([])
      expect(await sweepStaleStaging(parent, Date.now() + DAY + 60_000)).to.deep.equal([foreign])
      expect(readdirSync(live)).to.deep.equal(['snapshot.sqlite3'])
    }),
  )
})

describe('the guard of staging folders', () => {
  it(
    'removes every folder once its process is killed (SIGKILL), one guard for them all, whatever the names',
    withParent(async (parent) => {
      // A temp folder's name is the user's: spaces, quotes, a newline, shell syntax, non-ASCII.
      const odd = join(parent, `tmp dir 'q' "qq" \\ $(touch x) * ? [a] \n ü 🗄`)
      mkdirSync(odd)
      const script = join(parent, 'stage.mts')
      writeFileSync(
        script,
        [
          `import {writeFileSync} from 'node:fs'`,
          `import {join} from 'node:path'`,
          `import {makeStagingDir, removeStagingDir, STAGING_PURPOSES} from ${JSON.stringify(join(repoRoot, 'src', 'lib', 'staging.ts'))}`,
          `const folders = []`,
          `for (const purpose of STAGING_PURPOSES) folders.push(await makeStagingDir(${JSON.stringify(parent)}, purpose))`,
          `folders.push(await makeStagingDir(${JSON.stringify(odd)}, 'download', true))`,
          `for (const folder of folders) writeFileSync(join(folder, 'plaintext'), 'secret')`,
          `await removeStagingDir(folders[0])`,
          `console.log(JSON.stringify(folders))`,
          `setInterval(() => {}, 60_000)`,
        ].join('\n'),
      )
      const child = spawn(process.execPath, ['--import', 'tsx', script], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      const folders = JSON.parse(await firstOutput(child)) as string[]
      // Each as "pid ppid" (-ww: the whole command line, however wide); a guard outlives its process,
      // whose children go to init.
      const guards = () =>
        execFileSync('ps', ['-ww', '-eo', 'pid=,ppid=,args='], {encoding: 'utf8'})
          .split('\n')
          .filter((line) => line.endsWith(' divio-exit-guard'))
          .map((line) => line.trim().split(/\s+/).slice(0, 2).join(' '))
      const until = async (condition: () => boolean) => {
        for (let waited = 0; !condition() && waited < 30_000; waited += 20) await sleep(20)
      }

      const ours = guards().filter((line) => line.endsWith(` ${child.pid}`))
      expect(ours, 'one guard for all of the process’s folders').to.have.length(1)
      const guardPid = ours[0].split(' ')[0]
      const guardRuns = () => guards().some((line) => line.startsWith(`${guardPid} `))
      const present = (folder: string) => readdirSync(dirname(folder)).includes(basename(folder))
      expect(present(folders[0]), 'a folder removed by its process').to.equal(false)
      expect(
        folders.slice(1).filter((folder) => !present(folder)),
        'the folders in use',
      ).to.deep.equal([])

      child.kill('SIGKILL')
      await until(() => readdirSync(parent).length === 2 && readdirSync(odd).length === 0)
      expect(readdirSync(parent).sort(), 'no plaintext outlives a killed process').to.deep.equal(
        [basename(odd), 'stage.mts'].sort(),
      )
      expect(readdirSync(odd), 'nor in a folder of any name').to.deep.equal([])
      await until(() => !guardRuns())
      expect(guardRuns(), 'the guard has ended').to.equal(false)
    }),
  )
})

describe('a file system error in a staging folder', () => {
  const root = '/var/tmp/divio'
  const enospc = (path?: string) =>
    Object.assign(new Error('ENOSPC: no space left on device, write'), {code: 'ENOSPC', ...(path ? {path} : {})})

  it('is explained as the temp folder’s, naming the folder, what it needs room for, and DIVIO_BACKUP_TMPDIR', () => {
    for (const purpose of STAGING_PURPOSES) {
      const folder = `${root}/divio-${purpose}-41-4026531836-2386958-zCigs1`
      const error = tempFolderError(enospc(`${folder}/deep/er/file.bin`), root)
      expect(error, purpose).to.be.instanceOf(BackupError)
      expect(error!.exitCode).to.equal(7)
      expect(error!.message).to.equal(
        `Cannot write the temp file file.bin into the temp folder ${folder}/deep/er: the disk is full.`,
      )
      expect(error!.suggestion).to.match(/^Free space there, or point DIVIO_BACKUP_TMPDIR at a folder with room for \S/)
    }

    const readOnly = Object.assign(new Error('EROFS: read-only file system, open'), {
      code: 'EROFS',
      path: `${root}/divio-backup-41-4026531836-2386958-zCigs1/x`,
    })
    expect(tempFolderError(readOnly, `${root}/`)!.message).to.match(/: EROFS: read-only file system, open\.$/)
    expect(tempFolderError(readOnly, `${root}/`)!.suggestion).to.match(/writable, or point DIVIO_BACKUP_TMPDIR/)
  })

  it('is left alone anywhere else: no path, outside the temp root, not in a staging folder, or already explained', () => {
    const staged = `${root}/divio-backup-41-4026531836-2386958-zCigs1/file`
    for (const error of [
      enospc(),
      enospc(`${root}/not-ours/file`),
      enospc(`${root}/divio-backup-41-4026531836-2386958-zCigs1`),
      // A download's hidden staging folder sits in its output folder: the output's to answer for.
      enospc(`/home/me/out/.divio-download-41-4026531836-2386958-zCigs1/media.tar`),
      enospc(`${root}/../divio-backup-41-4026531836-2386958-zCigs1/file`),
      enospc(`/var/tmp/divio-other/divio-backup-41-4026531836-2386958-zCigs1/file`),
      new BackupError('STORE_UNAVAILABLE', 'already explained'),
      Object.assign(new Error('no code'), {path: staged}),
      undefined,
    ])
      expect(tempFolderError(error, root), String((error as Error | undefined)?.message)).to.equal(undefined)
  })
})
