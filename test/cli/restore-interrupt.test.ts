import {expect} from 'chai'
import {ChildProcess, execFileSync, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {startCli} from '../helpers/kill.js'
import {cli, makeProject, snapshotTree} from '../helpers/project.js'

const MiB = 1024 * 1024

/** Resolves with the exit code, or with 'hung' when the process has not exited within `ms`. */
function exitOf(child: ChildProcess, ms: number): Promise<'hung' | null | number> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('hung'), ms)
    child.on('exit', (code) => {
      clearTimeout(timer)
      resolve(code)
    })
  })
}

/**
 * Restore extracts media straight from the store, beside the target. Stopped part-way by SIGINT or
 * SIGTERM (the object it reads is a FIFO that gives half of it, then nothing: the point is reached
 * whatever the machine's speed), it exits 130 within seconds, and leaves the media folder as it was,
 * no extraction beside it, no staging folder and no safety backup.
 */
describe('restore interrupted while it extracts media from the store', function () {
  for (const format of ['tar', 'packs'] as const) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      it(`${format} format, ${signal}: exit 130, the media folder as it was, nothing left beside it`, async () => {
        const project = makeProject()
        project.env.DIVIO_BACKUP_MEDIA_FORMAT = format
        const tmp = join(project.root, '..', 'tmp')
        mkdirSync(tmp, {mode: 0o700})
        project.env.DIVIO_BACKUP_TMPDIR = tmp
        writeFileSync(join(project.root, 'media', 'video.bin'), randomBytes(8 * MiB))
        const created = cli(project, ['create', '--media-only', '--json'])
        expect(created.status, created.stderr).to.equal(0)
        const {id} = created.json() as {id: string}
        writeFileSync(join(project.root, 'media', 'after-the-backup.txt'), 'the state to keep\n')
        const before = snapshotTree(join(project.root, 'media'))

        // The largest object the restore reads: the archive, or the pack that holds the video.
        const environment = join(project.store, 'shop', 'local')
        const candidates =
          format === 'tar'
            ? [join(environment, id, 'media.tar.age')]
            : readdirSync(join(environment, 'packs')).map((name) => join(environment, 'packs', name))
        const object = candidates.sort((a, b) => statSync(b).size - statSync(a).size)[0]
        const original = `${object}.original`
        renameSync(object, original)
        execFileSync('mkfifo', [object])
        const half = Math.floor(statSync(original).size / 2)
        const feeder = spawn('sh', [
          '-c',
          `{ head -c ${half} "$1"; exec sleep 600; } > "$2"`,
          'feeder',
          original,
          object,
        ])
        try {
          const restore = startCli(project, ['restore', id, '--confirm', 'local', '--media-only'])
          const exited = exitOf(restore, 120_000)
          // Part-way: the extraction beside the target holds the files of the first half.
          const besideTarget = () => readdirSync(project.root).filter((name) => name.startsWith('.media.restore-'))
          const deadline = Date.now() + 60_000
          while (Date.now() < deadline && besideTarget().length === 0) await sleep(20)
          expect(besideTarget(), 'the extraction started beside the target').to.have.length(1)

          restore.kill(signal)
          const code = await exited
          expect(code, 'the restore ends on the signal').to.equal(130)
          expect(snapshotTree(join(project.root, 'media'))).to.deep.equal(before)
          expect(besideTarget(), 'no extraction is left beside the target').to.deep.equal([])
          expect(readdirSync(tmp), 'no staging folder is left').to.deep.equal([])
          const listed = cli(project, ['list', '--json']).json() as Array<{id: string}>
          expect(
            listed.map((backup) => backup.id),
            'no safety backup was taken',
          ).to.deep.equal([id])
        } finally {
          feeder.kill('SIGKILL')
        }

        // With the object whole again, the same restore completes.
        execFileSync('rm', [object])
        renameSync(original, object)
        const restored = cli(project, ['restore', id, '--confirm', 'local', '--media-only', '--no-safety-backup'])
        expect(restored.status, restored.stderr).to.equal(0)
        expect(existsSync(join(project.root, 'media', 'after-the-backup.txt'))).to.equal(false)
        expect(readFileSync(join(project.root, 'media', 'uploads', 'readme.txt'), 'utf8')).to.equal('hello media\n')
      })
    }
  }
})
