import {expect} from 'chai'
import {ChildProcess} from 'node:child_process'
import {Dirent, mkdirSync, readdirSync, statSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {killAfter, startCli} from '../helpers/kill.js'
import {cli, makeProject, Project} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'
import {writeRandomFile} from '../helpers/tools.js'

/** Every file and folder under `root`, with its mode; what a guard removes meanwhile is skipped. */
function modes(root: string): Array<{mode: number; path: string}> {
  const found: Array<{mode: number; path: string}> = []
  const gone = (error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }

  const visit = (folder: string) => {
    let entries: Dirent[] = []
    try {
      entries = readdirSync(folder, {withFileTypes: true})
    } catch (error) {
      gone(error)
    }

    for (const entry of entries) {
      const path = join(folder, entry.name)
      try {
        found.push({mode: statSync(path).mode & 0o777, path})
      } catch (error) {
        gone(error)
      }

      if (entry.isDirectory()) visit(path)
    }
  }

  visit(root)
  return found
}

function start(project: Project, args: string[], tmp: string, extra: NodeJS.ProcessEnv = {}) {
  return startCli(project, args, {DIVIO_BACKUP_TMPDIR: tmp, ...extra})
}

/** Waits for the guards of a killed process's staging folders to remove them (30 s at most). */
async function guardsRemoved(child: ChildProcess, tmp: string, when: string): Promise<void> {
  const own = () => readdirSync(tmp).filter((name) => name.includes(`-${child.pid}-`))
  for (let waited = 0; own().length > 0 && waited < 30_000; waited += 20) await sleep(20)
  expect(own(), `the staging of a create killed at ${when} is removed by its guard`).to.deep.equal([])
}

/**
 * SIGKILL at many points of `create` (from start-up to the commit) and of `prune`: whatever the point,
 * `list` never shows a partial backup, every backup it shows verifies, nothing in staging is readable by
 * other users, the guards of the dead process's staging folders remove them, and a sweep by the next
 * create or prune never removes a live one's.
 */
describe('SIGKILL sweep: create and prune killed at many points', function () {
  it('leaves no partial backup in list, nothing unverifiable, and no readable plaintext in staging', async () => {
    const project = makeProject()
    const tmp = join(project.root, '..', 'tmp')
    mkdirSync(tmp, {mode: 0o700})
    // A sparse file makes the media stage long enough to be hit at many points.
    const big = join(project.root, 'media', 'big.bin')
    writeFileSync(big, '')
    truncateSync(big, 160 * 1024 * 1024)
    expect((await cli(project, ['create'])).status, 'a first, complete backup').to.equal(0)

    const points = [30, 200, 400, 650, 900, 1200, 1600, 2100]
    for (const ms of points) {
      const create = start(project, ['create'], tmp)
      await killAfter(create, ms)
      for (const {mode, path} of modes(tmp)) {
        expect(
          mode & 0o077,
          `${path} is readable by others (mode ${mode.toString(8)}) after a kill at ${ms} ms`,
        ).to.equal(0)
      }

      await guardsRemoved(create, tmp, `${ms} ms`)
      const listed = await cli(project, ['list', '--json'], {DIVIO_BACKUP_TMPDIR: tmp})
      expect(listed.status, listed.stderr).to.equal(0)
      for (const backup of listed.json() as Array<{id: string; status: string}>)
        expect(backup.status).to.equal('complete')
    }

    const verify = await cli(project, ['verify', '--all'], {DIVIO_BACKUP_TMPDIR: tmp})
    expect(verify.status, verify.stdout + verify.stderr).to.equal(0)

    // Prune killed at a few points, then run to the end with an expired grace period.
    for (const ms of [50, 400, 900]) await killAfter(start(project, ['prune', '--confirm', 'local'], tmp), ms)
    expect((await cli(project, ['verify', '--all'])).status).to.equal(0)

    // A live create's staging is left alone by a sweep; a dead one's is removed.
    const live = start(project, ['create'], tmp)
    let liveStaging: string[] = []
    const deadline = Date.now() + 20_000
    while (liveStaging.length === 0 && Date.now() < deadline) {
      liveStaging = readdirSync(tmp).filter((name) => name.startsWith(`divio-backup-${live.pid}-`))
      await sleep(20)
    }

    expect(liveStaging, 'the live create made its staging folder').to.have.length(1)
    const dead = readdirSync(tmp).filter((name) => !name.startsWith(`divio-backup-${live.pid}-`))
    const pruned = await cli(project, ['prune', '--confirm', 'local'], {DIVIO_BACKUP_TMPDIR: tmp})
    expect(pruned.status, pruned.stderr).to.equal(0)
    const after = readdirSync(tmp)
    expect(after, 'the live staging survives the sweep').to.include(liveStaging[0])
    for (const name of dead) expect(after, `dead staging ${name} is removed`).to.not.include(name)
    await killAfter(live, 0)
    truncateSync(big, 1024)
    expect((await cli(project, ['create'], {DIVIO_BACKUP_TMPDIR: tmp})).status).to.equal(0)
    expect(readdirSync(tmp), 'the next create removes the staging of the killed one').to.deep.equal([])
  })
})

describe('SIGKILL sweep against S3 (s3rver)', function () {
  let s3: TestS3

  before(async () => {
    s3 = await TestS3.start()
  })

  after(async () => {
    await s3?.stop()
  })

  it('create killed at many points: list shows only complete backups, each verifies, and prune collects the rest', async () => {
    await s3.createBucket('kill-sweep')
    const project = makeProject()
    // Several parts, so that kills land before, during and after the multipart upload.
    writeRandomFile(join(project.root, 'media', 'video.bin'), 24 * 1024 * 1024)
    project.env.DIVIO_BACKUP_STORE = s3.dsn('kill-sweep', 'divio')
    const tmp = join(project.root, '..', 'tmp')
    mkdirSync(tmp, {mode: 0o700})
    const first = await cli(project, ['create'])
    expect(first.status, first.stderr).to.equal(0)

    for (const ms of [40, 250, 500, 800, 1100, 1500, 2000, 2600]) {
      const create = start(project, ['create'], tmp)
      await killAfter(create, ms)
      for (const {mode, path} of modes(tmp)) expect(mode & 0o077, `${path} after a kill at ${ms} ms`).to.equal(0)
      await guardsRemoved(create, tmp, `${ms} ms`)
      const listed = await cli(project, ['list', '--json'])
      expect(listed.status, listed.stderr).to.equal(0)
      for (const backup of listed.json() as Array<{status: string}>) expect(backup.status).to.equal('complete')
    }

    // One kill that lands mid-upload whatever the machine's speed: once the store shows an open upload.
    const midUpload = start(project, ['create'], tmp)
    const uploadsBefore = new Set(await s3.uploads('kill-sweep'))
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline && (await s3.uploads('kill-sweep')).every((key) => uploadsBefore.has(key))) {
      await sleep(20)
    }

    await killAfter(midUpload, 0)

    const verify = await cli(project, ['verify', '--all'])
    expect(verify.status, verify.stdout + verify.stderr).to.equal(0)

    // Past the grace period, prune collects every incomplete backup and open upload, and nothing else.
    const complete = new Set(((await cli(project, ['list', '--json'])).json() as Array<{id: string}>).map(({id}) => id))
    const before = (await cli(project, ['list', '--all', '--json'])).json() as Array<{status: string}>
    expect(
      before.some(({status}) => status === 'incomplete'),
      'some kills landed mid-upload',
    ).to.equal(true)
    const later = {DIVIO_BACKUP_NOW: new Date(Date.now() + 48 * 3_600_000).toISOString(), DIVIO_BACKUP_TMPDIR: tmp}
    const pruned = await cli({...project, env: {...project.env, ...later}}, ['prune', '--confirm', 'local'])
    expect(pruned.status, pruned.stderr).to.equal(0)
    const all = (await cli(project, ['list', '--all', '--json'])).json() as Array<{
      id: string
      status: string
    }>
    expect(all.filter(({status}) => status !== 'complete')).to.deep.equal([])
    expect(all.map(({id}) => id).filter((id) => complete.has(id)).length).to.be.greaterThan(0)
    expect(readdirSync(tmp), 'prune removed the staging of the killed creates').to.deep.equal([])
  })
})
