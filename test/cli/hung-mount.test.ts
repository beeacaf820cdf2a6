import {expect} from 'chai'
import {ChildProcess, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {SMALL_WORK_UNITS} from '../../src/lib/worker.js'
import {skipWithoutFuse, SYSTEM_PYTHON} from '../helpers/mounts.js'
import {until} from '../helpers/processes.js'
import {cliAsync, makeProject, Project} from '../helpers/project.js'

const slowFs = fileURLToPath(new URL('../fixtures/slowfs.py', import.meta.url))

/**
 * A media file on a mount whose reads hang (a FUSE file system that answers only when the test says
 * so): the reads must not block the main thread, so the stall watchdog and SIGTERM still act while the
 * read hangs. Each test observes the command's reaction *while* the read is still blocked, then lets
 * it go; the kernel itself holds a process until a read of its own is answered, so the exit follows.
 */
describe('a media file on a hung mount', () => {
  let project: Project
  let control: string
  let mountpoint: string
  let server: ChildProcess | undefined

  before(function () {
    skipWithoutFuse(this)
  })

  beforeEach(async () => {
    project = makeProject()
    control = join(project.root, '..', 'control')
    mkdirSync(control)
    mountpoint = join(project.root, 'media', 'hung-mount')
    mkdirSync(mountpoint)
    server = spawn(SYSTEM_PYTHON, [slowFs, mountpoint, '-f'], {
      env: {...process.env, SLOWFS_CONTROL: control},
      stdio: 'ignore',
    })
    await until(() => existsSync(join(mountpoint, 'slow.bin')), 'the FUSE mount')
  })

  afterEach(async () => {
    writeFileSync(join(control, 'release'), '')
    spawnSync('fusermount', ['-u', '-z', mountpoint])
    server?.kill()
    await sleep(100)
  })

  function start(args: string[], env: NodeJS.ProcessEnv) {
    const child = cliAsync({...project, env: {...project.env, ...env}}, args)
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text
    })
    const exited = new Promise<null | number>((resolve) => {
      child.on('close', resolve)
    })
    return {child, exited, stderr: () => stderr}
  }

  /**
   * A small tree is read with the thread pool's calls, a larger one on the reader thread (file-reader.ts):
   * files sorted before the mount's folder spend the small tree's budget before the hung read.
   */
  const trees = [
    {files: 0, label: 'a small tree'},
    {files: 4 * SMALL_WORK_UNITS, label: `${4 * SMALL_WORK_UNITS} files, past the budget of small work`},
  ]
  const fillTree = (files: number) => {
    if (files === 0) return
    const folder = join(project.root, 'media', 'aaa-many')
    mkdirSync(folder)
    for (let index = 0; index < files; index++) writeFileSync(join(folder, `f${index}`), String(index))
  }

  for (const {files, label} of trees)
    for (const format of ['tar', 'packs']) {
      it(`${format} format, ${label}: the stall watchdog fails the backup while the read still hangs`, async () => {
        fillTree(files)
        const run = start(['create', '--media-only'], {
          DIVIO_BACKUP_MEDIA_FORMAT: format,
          DIVIO_BACKUP_STALL_SECONDS: '2',
        })
        await until(() => existsSync(join(control, 'reading')), 'the read to start')
        await until(() => /Stalled/.test(run.stderr()), 'the stall to be reported')
        // Reported while the read is still blocked: nothing was waiting on it but a pool thread.
        expect(existsSync(join(control, 'release'))).to.equal(false)
        writeFileSync(join(control, 'release'), '')
        expect(await run.exited).to.equal(7)
        expect(run.stderr()).to.match(/Stalled: .*hung-mount|Stalled: the media/)
      })
    }

  for (const {files, label} of trees)
    for (const format of ['tar', 'packs']) {
      it(`${format} format, ${label}: SIGTERM is handled while the read hangs, and the command exits 130`, async () => {
        fillTree(files)
        const run = start(['create', '--media-only'], {
          DIVIO_BACKUP_MEDIA_FORMAT: format,
          DIVIO_BACKUP_STALL_SECONDS: '3600',
        })
        await until(() => existsSync(join(control, 'reading')), 'the read to start')
        run.child.kill('SIGTERM')
        await until(
          () => /Error: Interrupted: backup \S+ was not committed/.test(run.stderr()),
          'the interruption to be reported',
        )
        expect(existsSync(join(control, 'release'))).to.equal(false)
        writeFileSync(join(control, 'release'), '')
        expect(await run.exited).to.equal(130)
      })
    }
})
