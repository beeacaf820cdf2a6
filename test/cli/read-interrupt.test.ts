import {expect} from 'chai'
import {ChildProcess} from 'node:child_process'
import {existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join, relative} from 'node:path'

import {STOP_GRACE_MS} from '../../src/cli/base-command.js'
import {SMALL_WORK_UNITS} from '../../src/lib/worker.js'
import {holdStoreRead, skipWithoutFuse} from '../helpers/mounts.js'
import {until, waitsIn} from '../helpers/processes.js'
import {cli, cliAsync, makeProject, Project, snapshotTree} from '../helpers/project.js'
import {writeRandomFile} from '../helpers/tools.js'

const MiB = 1024 * 1024

/** Starts the CLI with its stderr gathered; `exited` resolves with its code, or 'hung' after `ms`. */
function start(project: Project, args: string[], ms = 120_000) {
  const child: ChildProcess = cliAsync(project, args)
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text
  })
  const exited = new Promise<'hung' | null | number>((resolve) => {
    const timer = setTimeout(() => resolve('hung'), ms)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
  return {child, exited, stderr: () => stderr}
}

/**
 * A backup whose largest media object (the archive, or the pack that holds a video) stops half-way
 * (holdStoreRead): whatever reads the backup is held part-way through, whatever the machine's speed.
 */
async function holdHalfway(project: Project, format: 'packs' | 'tar', id: string) {
  const environment = join(project.store, 'shop', 'local')
  const candidates =
    format === 'tar'
      ? [join(environment, id, 'media.tar.age')]
      : readdirSync(join(environment, 'packs')).map((name) => join(environment, 'packs', name))
  const object = candidates.sort((a, b) => statSync(b).size - statSync(a).size)[0]
  return holdStoreRead(project.store, relative(project.store, object), Math.floor(statSync(object).size / 2))
}

/**
 * The interruption is reported while the read still waits in the kernel. Letting the read go then
 * lets the process exit with 130 at once; held for good, it ends by the signal after the grace period
 * (see the last test).
 */
async function interrupted(run: ReturnType<typeof start>, object: {held: () => boolean; letGo: () => void}) {
  await until(() => /Error: Interrupted/.test(run.stderr()), 'the interruption is reported while the read waits')
  expect(object.held(), 'the read was still held when the interruption was reported').to.equal(true)
  object.letGo()
}

/** A backup of the sample app with an 8 MiB video, and `files` tiny files sorted before everything else. */
async function backedUp(format: 'packs' | 'tar', files = 0) {
  const project = makeProject()
  project.env.DIVIO_BACKUP_MEDIA_FORMAT = format
  const tmp = join(project.root, '..', 'tmp')
  mkdirSync(tmp, {mode: 0o700})
  project.env.DIVIO_BACKUP_TMPDIR = tmp
  writeRandomFile(join(project.root, 'media', 'video.bin'), 8 * MiB)
  if (files > 0) mkdirSync(join(project.root, 'media', 'aaa-many'))
  for (let index = 0; index < files; index++) {
    writeFileSync(join(project.root, 'media', 'aaa-many', `f${index}`), String(index))
  }

  const created = await cli(project, ['create', '--media-only', '--json'])
  expect(created.status, created.stderr).to.equal(0)
  return {id: (created.json() as {id: string}).id, project, tmp}
}

/**
 * Every command that reads a backup, stopped by a signal while it reads: the interruption reported at
 * once, while the read is still stuck in the kernel, and exit 130 (never 4, as if the backup were
 * damaged, nor an unexpected error), with no staging folder left behind. Restore, which
 * extracts media straight from the store beside the target, also leaves the media folder as it was,
 * no extraction beside it, and no safety backup.
 */
describe('reading commands interrupted part-way through a backup', function () {
  before(function () {
    skipWithoutFuse(this)
  })

  // One signal a format: both go to the same handler. A small tree is written with the thread pool's
  // calls; past the budget of small work, as here before the video, on the writer thread (file-writer.ts).
  for (const [format, signal, files] of [
    ['tar', 'SIGINT', 0],
    ['packs', 'SIGTERM', 0],
    ['tar', 'SIGTERM', 4 * SMALL_WORK_UNITS],
    ['packs', 'SIGINT', 4 * SMALL_WORK_UNITS],
  ] as const) {
    const tree = files === 0 ? 'a small tree' : `${files} files, past the budget of small work`
    it(`restore, ${format} format, ${tree}, ${signal}: exit 130, the media folder as it was, nothing left beside it`, async () => {
      const {id, project, tmp} = await backedUp(format, files)
      writeFileSync(join(project.root, 'media', 'after-the-backup.txt'), 'the state to keep\n')
      const before = snapshotTree(join(project.root, 'media'))
      const object = await holdHalfway(project, format, id)
      try {
        const restore = start(project, ['restore', id, '--confirm', 'local', '--media-only'])
        const besideTarget = () => readdirSync(project.root).filter((name) => name.startsWith('.media.restore-'))
        await until(object.held, 'the restore read half of the object')
        expect(besideTarget(), 'the extraction is under way beside the target').to.have.length(1)

        restore.child.kill(signal)
        await interrupted(restore, object)
        expect(await restore.exited, 'the restore ends on the signal').to.equal(130)
        expect(snapshotTree(join(project.root, 'media'))).to.deep.equal(before)
        expect(besideTarget(), 'no extraction is left beside the target').to.deep.equal([])
        expect(readdirSync(tmp), 'no staging folder is left').to.deep.equal([])
        const listed = (await cli(project, ['list', '--json'])).json() as Array<{id: string}>
        expect(
          listed.map((backup) => backup.id),
          'no safety backup was taken',
        ).to.deep.equal([id])
      } finally {
        await object.release()
      }

      // With the object whole again, the same restore completes.
      const restored = await cli(project, ['restore', id, '--confirm', 'local', '--media-only', '--no-safety-backup'])
      expect(restored.status, restored.stderr).to.equal(0)
      expect(existsSync(join(project.root, 'media', 'after-the-backup.txt'))).to.equal(false)
      expect(readFileSync(join(project.root, 'media', 'uploads', 'readme.txt'), 'utf8')).to.equal('hello media\n')
    })

    if (files > 0) continue
    it(`restore, ${format} format, a read held for good, ${signal}: ends by the signal after the grace period, staging removed`, async () => {
      const {id, project, tmp} = await backedUp(format)
      const before = snapshotTree(join(project.root, 'media'))
      const object = await holdHalfway(project, format, id)
      try {
        const restore = start(project, ['restore', id, '--confirm', 'local', '--media-only'], STOP_GRACE_MS + 30_000)
        await until(object.held, 'the restore read half of the object')
        // Held for good only once a thread waits for the page: a read ahead can reach the middle first.
        await until(() => waitsIn(restore.child.pid!, 'folio_wait_bit_common'), 'a read waits on the held page')
        expect(readdirSync(tmp), 'the restore stages its files').to.have.length(1)
        const signalled = Date.now()
        restore.child.kill(signal)
        await until(() => /Error: Interrupted/.test(restore.stderr()), 'the interruption is reported at once')
        // Node.js cannot exit while a thread waits in a read the kernel holds; the signal ends it.
        expect(await restore.exited).to.equal(null)
        expect(restore.child.signalCode).to.equal(signal)
        expect(object.held(), 'the read was held to the end').to.equal(true)
        expect(Date.now() - signalled).to.be.within(STOP_GRACE_MS - 1000, STOP_GRACE_MS + 8000)
        // What the process could not remove, its watchdog does once it is gone.
        await until(() => readdirSync(tmp).length === 0, 'no staging folder is left')
        expect(snapshotTree(join(project.root, 'media'))).to.deep.equal(before)
      } finally {
        await object.release()
      }
    })

    it(`verify, download, export and drill, ${format} format, SIGINT: exit 130, no staging left`, async () => {
      const {id, project, tmp} = await backedUp(format)
      const commands = [
        ['verify', id],
        ['download', id, '-o', join(project.root, 'downloaded')],
        ['export', '--latest', '-o', join(project.root, 'exported')],
        ['drill', id],
      ]
      for (const args of commands) {
        const object = await holdHalfway(project, format, id)
        try {
          const reader = start(project, args)
          await until(object.held, `${args[0]} read half of the object`)
          reader.child.kill('SIGINT')
          await interrupted(reader, object)
          expect(await reader.exited, `${args[0]} ends on the signal`).to.equal(130)
          expect(readdirSync(tmp), `${args[0]} leaves no staging folder`).to.deep.equal([])
        } finally {
          await object.release()
        }
      }

      expect(existsSync(join(project.root, 'downloaded')), 'download leaves nothing').to.equal(false)
    })
  }
})

/**
 * A restore killed with SIGKILL part-way (or by the OOM killer) runs no cleanup of its own, and what it
 * had written so far is plaintext: in its staging folder, and beside the target (the media folder's
 * extraction, the SQLite file's copy), where no later command would sweep it. Guards outside the
 * process remove both once it is gone; the target is as it was.
 */
describe('restores killed with SIGKILL part-way', function () {
  before(function () {
    skipWithoutFuse(this)
  })

  for (const format of ['tar', 'packs'] as const) {
    it(`media, ${format} format: nothing left beside the media folder or in the temp folder`, async () => {
      const {id, project, tmp} = await backedUp(format)
      const before = snapshotTree(join(project.root, 'media'))
      const object = await holdHalfway(project, format, id)
      try {
        const restore = start(project, ['restore', id, '--confirm', 'local', '--media-only', '--no-safety-backup'])
        const beside = () => readdirSync(project.root).filter((name) => name.startsWith('.media.'))
        await until(object.held, 'the restore read half of the object')
        expect(beside(), 'the extraction is under way beside the target').to.have.length(1)
        expect(readdirSync(tmp), 'and its staging folder').to.have.length(1)
        restore.child.kill('SIGKILL')
        await restore.exited
        await until(() => beside().length === 0 && readdirSync(tmp).length === 0, 'no plaintext is left')
        expect(snapshotTree(join(project.root, 'media'))).to.deep.equal(before)
      } finally {
        await object.release()
      }
    })
  }

  it('SQLite: nothing left beside the database file', async () => {
    const project = makeProject()
    const created = await cli(project, ['create', '--db-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const database = join(project.root, 'db.sqlite3')
    const original = readFileSync(database)
    // The copy beside the database is written, then checked with the sqlite3 program: a stand-in for
    // it holds the check (recording its pid) while the copy is there, whatever the machine's speed.
    const bin = join(project.root, '..', 'bin')
    const checking = join(project.root, '..', 'checking')
    mkdirSync(bin)
    writeFileSync(
      join(bin, 'sqlite3'),
      `#!/bin/sh\ncase "$*" in *quick_check*) echo $$ > "${checking}"; exec sleep 600;; esac\nexec /usr/bin/sqlite3 "$@"\n`,
      {mode: 0o755},
    )
    const restore = start(
      {...project, env: {...project.env, DIVIO_BACKUP_SQLITE: 'cli', PATH: `${bin}:${process.env.PATH}`}},
      ['restore', id, '--confirm', 'local', '--db-only', '--no-safety-backup'],
    )
    const beside = () => readdirSync(project.root).filter((entry) => entry.startsWith('.db.sqlite3.'))
    try {
      await until(() => existsSync(checking) && readFileSync(checking, 'utf8').endsWith('\n'), 'the copy is checked')
      expect(beside(), 'the copy is beside the database').to.have.length(1)
      restore.child.kill('SIGKILL')
      await restore.exited
      await until(() => beside().length === 0, 'no copy is left beside the database')
      expect(readFileSync(database).equals(original), 'the database is as it was').to.equal(true)
    } finally {
      if (existsSync(checking)) process.kill(Number(readFileSync(checking, 'utf8')), 'SIGKILL')
    }
  })
})
