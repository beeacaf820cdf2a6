import {expect} from 'chai'
import {spawn} from 'node:child_process'
import {existsSync, readFileSync, readlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {until} from '../helpers/processes.js'
import {cli, makeProject, Project} from '../helpers/project.js'

/**
 * A process that has the SQLite file open (the app, a worker, a forgotten shell) goes on using the
 * file it opened, which a restore renames away: what it writes is lost, and the app serves the old
 * data until it restarts. So the restore refuses while one does, and names it.
 */
describe('restore of an SQLite database that another process has open', () => {
  let project: Project
  let database: string

  beforeEach(async () => {
    project = makeProject()
    database = join(project.root, 'db.sqlite3')
    const created = await cli(project, ['create', '--db-only'])
    expect(created.status, created.stderr).to.equal(0)
  })

  /** A process that holds `path` open (as descriptor 3) until `end()`. */
  async function holdOpen(path: string): Promise<{end: () => Promise<void>; pid: number}> {
    const holder = spawn('sh', ['-c', 'exec 3<"$1"; read _', 'holder', path], {stdio: ['pipe', 'ignore', 'ignore']})
    const ended = new Promise((resolve) => {
      holder.on('exit', resolve)
    })
    const pid = holder.pid!
    await until(() => {
      try {
        return readlinkSync(`/proc/${pid}/fd/3`) === path
      } catch {
        return false
      }
    }, 'the holder has the file open')
    return {
      async end() {
        holder.stdin!.end()
        await ended
      },
      pid,
    }
  }

  const restore = () => cli(project, ['restore', 'latest', '--db-only', '--confirm', 'local', '--no-safety-backup'])

  for (const [what, suffix] of [
    ['the database file', ''],
    ['its -wal (an app in WAL mode)', '-wal'],
  ]) {
    it(`open (${what}): refused with exit 7, naming the process, and nothing changed; once it is closed, restored`, async () => {
      const path = `${database}${suffix}`
      if (suffix) writeFileSync(path, 'the write-ahead log of the running app')
      const before = readFileSync(database)
      const holder = await holdOpen(path)
      try {
        const refused = await restore()
        expect(refused.status, refused.stderr).to.equal(7)
        expect(refused.stderr).to.include(`The database ${database} is open in process ${holder.pid} (sh):`)
        expect(refused.stderr).to.include('Try this: Stop the app and its workers')
        // The program's name only: another process's command line may carry a password.
        expect(refused.stderr).to.not.include('exec 3<')
        expect(readFileSync(database).equals(before)).to.equal(true)
        if (suffix) expect(existsSync(path)).to.equal(true)
        // Refused before the safety backup too: a restore that cannot happen costs no backup.
        const json = await cli(project, ['restore', 'latest', '--db-only', '--confirm', 'local', '--json'])
        expect(json.status).to.equal(7)
        expect((json.json() as {error: {code: string}}).error.code).to.equal('ENV_BUSY')
        expect((await cli(project, ['list', '--json'])).json()).to.have.length(1)
      } finally {
        await holder.end()
      }

      const restored = await restore()
      expect(restored.status, restored.stderr).to.equal(0)
      if (suffix) expect(existsSync(path)).to.equal(false)
    })
  }
})
