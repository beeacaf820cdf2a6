import {expect} from 'chai'
import {ChildProcess, execFileSync} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, rmSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {STOP_GRACE_MS} from '../../src/cli/base-command.js'
import {holdStoreRead, skipWithoutFuse} from '../helpers/mounts.js'
import {until, waitsIn} from '../helpers/processes.js'
import {cli, cliAsync, makeProject, Project} from '../helpers/project.js'

/** The process as it ended, with what it printed; or 'running' when it outlives `ms`. */
function start(project: Project, args: string[], ms: number) {
  const child: ChildProcess = cliAsync(project, args)
  let stderr = ''
  let stdout = ''
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text
  })
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    stdout += text
  })
  const ended = new Promise<'running' | {code: null | number; signal: NodeJS.Signals | null}>((resolve) => {
    const timer = setTimeout(() => resolve('running'), ms)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({code, signal})
    })
  })
  return {child, ended, stderr: () => stderr, stdout: () => stdout}
}

/** Whether a create has written the first MiB of its media archive into the store. */
function uploading(project: Project): boolean {
  const environment = join(project.store, 'shop', 'local')
  if (!existsSync(environment)) return false
  return readdirSync(environment, {encoding: 'utf8', recursive: true}).some(
    (path) => path.includes('media.tar.age.partial-') && statSync(join(environment, path)).size > 1024 * 1024,
  )
}

/**
 * A backup whose manifest sits on a mount that hangs: the store is served by a FUSE mirror whose reads
 * of the manifest wait until the test lets them go (holdStoreRead). Whoever reads it waits in the
 * kernel, and nothing in the process can cancel that call.
 */
async function storeWithAStuckManifest() {
  const {id, project, tmp} = await backedUpMedia()
  const manifest = await holdStoreRead(project.store, `shop/local/${id}/manifest.json`, 0)
  return {manifest, project, tmp}
}

/** A project with one media backup in its local store, and a temp folder of its own. */
async function backedUpMedia() {
  const project = makeProject()
  const tmp = join(project.root, '..', 'tmp')
  mkdirSync(tmp, {mode: 0o700})
  project.env.DIVIO_BACKUP_TMPDIR = tmp
  const created = await cli(project, ['create', '--media-only', '--json'])
  expect(created.status, created.stderr).to.equal(0)
  return {id: (created.json() as {id: string}).id, project, tmp}
}

/** A media backup one of whose objects is replaced by a FIFO that no one writes. */
async function withFifoInPlaceOf(name: string) {
  const {id, project} = await backedUpMedia()
  const path = join(project.store, 'shop', 'local', id, name)
  rmSync(path)
  execFileSync('mkfifo', [path])
  return {id, path, project}
}

/**
 * SIGINT/SIGTERM end every command within seconds, even while a call into the kernel never returns.
 * Node.js cannot exit while a thread waits in such a call (process.exit() waits for it), so a command
 * reading from a hung mount used to stay for good, whatever signal came next but SIGKILL. The first
 * signal now asks for a clean stop and gives it STOP_GRACE_MS; past that, or at a second signal, the
 * process ends by the signal itself (a shell sees 128 + its number), after reporting the
 * interruption, `--json` included.
 */
describe('a command that cannot stop cleanly', function () {
  const bound = STOP_GRACE_MS + 8000

  before(function () {
    skipWithoutFuse(this)
  })

  it('list reading from a hung mount: the interruption reported at once, then the end by SIGTERM once the grace is over', async () => {
    const {manifest, project, tmp} = await storeWithAStuckManifest()
    try {
      const list = start(project, ['list', '--json'], 60_000)
      await until(
        () => manifest.held() && waitsIn(list.child.pid!, 'folio_wait_bit_common', 'request_wait_answer'),
        'list waits in the read of the manifest',
      )
      const signalled = Date.now()
      list.child.kill('SIGTERM')
      await until(() => list.stdout().includes('"code"'), 'the interruption is reported while the read still hangs')
      const {error} = JSON.parse(list.stdout()) as {error: {code: string; message: string}}
      expect(error).to.deep.include({code: 'INTERRUPTED', message: 'Interrupted by SIGTERM.'})
      // Held by its read, the process cannot exit: the signal ends it.
      const ended = await list.ended
      const took = Date.now() - signalled
      expect(ended, 'list ends although the read never returns').to.deep.equal({code: null, signal: 'SIGTERM'})
      expect(took, 'not before the grace period').to.be.at.least(STOP_GRACE_MS - 1000)
      expect(took, 'soon after it').to.be.below(bound)
      expect(readdirSync(tmp), 'nothing staged').to.deep.equal([])
    } finally {
      await manifest.release()
    }
  })

  it('a second signal ends it at once, without waiting for the grace period', async () => {
    const {manifest, project} = await storeWithAStuckManifest()
    try {
      const list = start(project, ['list'], 60_000)
      await until(
        () => manifest.held() && waitsIn(list.child.pid!, 'folio_wait_bit_common', 'request_wait_answer'),
        'list waits in the read of the manifest',
      )
      list.child.kill('SIGINT')
      await until(() => /Error: Interrupted by SIGINT\./.test(list.stderr()), 'the interruption is reported at once')
      const signalled = Date.now()
      list.child.kill('SIGINT')
      const ended = await list.ended
      expect(ended).to.deep.equal({code: null, signal: 'SIGINT'})
      expect(Date.now() - signalled, 'at once, far from the grace period').to.be.below(STOP_GRACE_MS / 2)
    } finally {
      await manifest.release()
    }
  })

  it('a call that no clean stop reaches (an identity from a FIFO whose writer never comes): reported as such, then ended by the signal', async () => {
    const {project} = await backedUpMedia()
    // `DIVIO_BACKUP_IDENTITY_FILE=<(password-manager read …)` is a FIFO: a writer that never comes (a
    // prompt no one answers) holds its open in the kernel, where no signal handler reaches it.
    const identity = join(project.root, '..', 'identity-fifo')
    execFileSync('mkfifo', [identity])
    const verify = start(
      {...project, env: {...project.env, DIVIO_BACKUP_IDENTITY_FILE: identity}},
      ['verify', '--json'],
      60_000,
    )
    await until(() => waitsIn(verify.child.pid!, 'wait_for_partner'), 'verify waits in the open of the identity')
    const signalled = Date.now()
    verify.child.kill('SIGTERM')
    const ended = await verify.ended
    const took = Date.now() - signalled
    expect(ended).to.deep.equal({code: null, signal: 'SIGTERM'})
    expect(took, 'after the grace period').to.be.within(STOP_GRACE_MS - 1000, bound)
    const {error} = JSON.parse(verify.stdout()) as {error: {code: string; message: string; suggestion: string}}
    expect(error.code).to.equal('INTERRUPTED')
    expect(error.message).to.equal(
      'Interrupted by SIGTERM, and still running 10 s later: a call to the file system has not returned (a hung mount, or a special file where a file was expected).',
    )
    expect(error.suggestion).to.match(/Check the mounts of the store, the media, the key files and DIVIO_BACKUP_TMPDIR/)
  })

  it('a command that stops cleanly still exits 130, and leaves no watchdog behind', async () => {
    const project = makeProject()
    // A create with a large sparse file is busy long enough to be stopped in the middle.
    execFileSync('truncate', ['-s', '2G', join(project.root, 'media', 'big.bin')])
    const create = start(project, ['create', '--media-only', '--verbose'], 60_000)
    await until(() => uploading(project), 'the create is writing its media')
    create.child.kill('SIGTERM')
    const ended = await create.ended
    expect(ended, create.stderr()).to.deep.equal({code: 130, signal: null})
    // The watchdog waits on a pipe from the command: it ends with it and sends nothing later.
    const watchdogs = () =>
      execFileSync('ps', ['-eo', 'args'], {encoding: 'utf8'})
        .split('\n')
        .filter((line) => line.includes(`guard ${create.child.pid} TERM`))
    expect(create.stderr(), 'the signal started a watchdog (--verbose traces it)').to.include(
      `guard ${create.child.pid} TERM ${STOP_GRACE_MS / 1000}`,
    )
    await until(() => watchdogs().length === 0, 'no watchdog outlives the command')
  })
})

describe("a FIFO planted under an object's name", () => {
  it('is not waited on: list names it at once, and the backup as damaged', async () => {
    const {id, path: manifest, project} = await withFifoInPlaceOf('manifest.json')
    // Before, list waited in open(2) for a writer, for good.
    const list = start(project, ['list', '--json'], 30_000)
    const ended = await list.ended
    expect(ended, list.stderr()).to.deep.equal({code: 0, signal: null})
    const rows = JSON.parse(list.stdout()) as Array<{id: string; status: string}>
    const row = rows.find((backup) => backup.id === id)
    expect(row).to.include({status: 'damaged'})
    expect(JSON.stringify(row)).to.include(`${manifest} is a FIFO, not a regular file`)
  })

  it('in place of the media archive: verify, download and restore fail at once, naming it (exit 4)', async () => {
    const {id, path: archive, project} = await withFifoInPlaceOf('media.tar.age')
    for (const args of [
      ['verify', id],
      ['download', id, '-o', join(project.root, '..', 'downloaded')],
      ['restore', id, '--media-only', '--confirm', 'local', '--no-safety-backup'],
    ]) {
      const run = start(project, args, 30_000)
      expect(await run.ended, `${args[0]}: ${run.stderr()}`).to.deep.equal({code: 4, signal: null})
      expect(run.stdout() + run.stderr(), args[0]).to.include(`${archive} is a FIFO, not a regular file`)
    }
  })
})

describe('a local store on a mount that hangs, without a signal', function () {
  before(function () {
    skipWithoutFuse(this)
  })

  it('list fails as a stall of the store (exit 7) after DIVIO_BACKUP_STALL_SECONDS, reported while the read hangs', async () => {
    const {manifest, project} = await storeWithAStuckManifest()
    project.env.DIVIO_BACKUP_STALL_SECONDS = '2'
    try {
      const list = start(project, ['list', '--json'], 60_000)
      await until(
        () => manifest.held() && waitsIn(list.child.pid!, 'folio_wait_bit_common', 'request_wait_answer'),
        'list waits in the read of the manifest',
      )
      // Before, it waited with the read for as long as the mount hung.
      await until(() => list.stdout().includes('"code"'), 'the stall is reported while the read still hangs')
      const {error} = JSON.parse(list.stdout()) as {error: {code: string; message: string}}
      expect(error.code).to.equal('STORE_UNAVAILABLE')
      expect(error.message).to.equal(`Stalled: the store folder ${project.store} did not answer a read within 2 s.`)
      // The kernel holds the process until its read is answered; then it exits with the stall's code.
      manifest.letGo()
      expect(await list.ended).to.deep.equal({code: 7, signal: null})
    } finally {
      await manifest.release()
    }
  })
})

describe('a store on a mount that stops answering altogether', function () {
  before(function () {
    skipWithoutFuse(this)
  })

  // Every call into the mount waits, from the config's check that the store is not in the media
  // folder (which follows links) on. That check ran on the main thread, synchronously: SIGTERM could
  // not even be heard. A call that a FUSE server has taken is one the kernel waits out, SIGKILL
  // included, so the process ends only once the mount answers: the test lets it, after the report.
  it('SIGTERM is still heard: the interruption is reported while every call of the store hangs', async () => {
    const {manifest, project} = await storeWithAStuckManifest()
    manifest.hang()
    try {
      const list = start(project, ['list', '--json'], 60_000)
      await until(() => waitsIn(list.child.pid!, 'request_wait_answer'), 'list waits on the mount')
      list.child.kill('SIGTERM')
      await until(() => list.stdout().includes('"code"'), 'the interruption is reported while the mount hangs')
      const {error} = JSON.parse(list.stdout()) as {error: {code: string}}
      expect(error.code).to.equal('INTERRUPTED')
      manifest.letGo()
      expect(await list.ended, 'it ends once the mount answers').to.not.equal('running')
    } finally {
      await manifest.release()
    }
  })
})
