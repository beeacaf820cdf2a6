import {expect} from 'chai'
import {ChildProcess, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, readlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {until} from '../helpers/processes.js'
import {cli, cliAsync, listFiles, makeProject, Project, writeEnvironments} from '../helpers/project.js'

/**
 * The sqlite3 program, but one step of it held (its pid recorded in `held`) for as long as the test
 * wants: the command that runs it stays inside that step, whatever the machine's speed.
 */
function holdingSqlite(project: Project, step: 'backup' | 'quick_check'): {env: NodeJS.ProcessEnv; held: string} {
  const bin = join(project.root, '..', `bin-${step}`)
  const held = join(project.root, '..', `held-${step}`)
  mkdirSync(bin)
  writeFileSync(
    join(bin, 'sqlite3'),
    `#!/bin/sh\ncase "$*" in *${step}*) echo $$ > "${held}"; exec sleep 600;; esac\nexec /usr/bin/sqlite3 "$@"\n`,
    {mode: 0o755},
  )
  return {env: {...project.env, DIVIO_BACKUP_SQLITE: 'cli', PATH: `${bin}:${process.env.PATH}`}, held}
}

function started(project: Project, env: NodeJS.ProcessEnv, args: string[]) {
  const child: ChildProcess = cliAsync({...project, env}, args)
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text
  })
  const exited = new Promise<null | number>((resolve) => {
    child.on('exit', (code) => resolve(code))
  })
  return {child, exited, stderr: () => stderr}
}

const heldPid = (held: string) => Number(readFileSync(held, 'utf8'))
const isHeld = (held: string) => existsSync(held) && readFileSync(held, 'utf8').endsWith('\n')
const marks = (project: Project) => existsSync(join(project.root, '.divio', 'running'))

describe('a backup and a restore of one environment on one machine', function () {
  it('a backup refuses while a restore into the environment runs (exit 7), and runs once it has ended', async () => {
    const project = makeProject()
    const created = await cli(project, ['create', '--db-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const {env, held} = holdingSqlite(project, 'quick_check')
    const restore = started(project, env, ['restore', id, '--db-only', '--confirm', 'local', '--no-safety-backup'])
    try {
      await until(() => isHeld(held), 'the restore is applying')
      const refused = await cli(project, ['create', '--json'])
      expect(refused.status).to.equal(7)
      const {error} = refused.json() as {error: {code: string; message: string}}
      expect(error.code).to.equal('ENV_BUSY')
      expect(error.message).to.match(
        new RegExp(`^A restore into shop/local is running on this machine \\(process ${restore.child.pid}, since `),
      )
    } finally {
      restore.child.kill('SIGKILL')
      await restore.exited
      if (existsSync(held)) process.kill(heldPid(held), 'SIGKILL')
    }

    // Its guard removes the mark of the killed restore; the marks leave no folder behind.
    await until(() => !marks(project), "the killed restore's mark is gone")
    const after = await cli(project, ['create', '--json'])
    expect(after.status, after.stderr).to.equal(0)
    expect(marks(project)).to.equal(false)
  })

  it('a restore waits for a backup of the environment that is running, and goes on once it has ended', async () => {
    const project = makeProject()
    const created = await cli(project, ['create', '--db-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as {id: string}
    const {env, held} = holdingSqlite(project, 'backup')
    const backup = started(project, env, ['create', '--db-only'])
    try {
      await until(() => isHeld(held), 'the backup is reading the database')
      const restore = started(project, project.env, [
        'restore',
        id,
        '--db-only',
        '--confirm',
        'local',
        '--no-safety-backup',
      ])
      await until(() => /Waiting for the backup of shop\/local/.test(restore.stderr()), 'the restore waits')
      expect(restore.stderr()).to.include(`(process ${backup.child.pid}, since `)
      expect(restore.child.exitCode, 'still waiting').to.equal(null)
      backup.child.kill('SIGKILL')
      expect(await restore.exited, restore.stderr()).to.equal(0)
    } finally {
      backup.child.kill('SIGKILL')
      await backup.exited
      if (existsSync(held)) process.kill(heldPid(held), 'SIGKILL')
    }
  })

  it('the mark of a process that is gone counts for nothing, and goes', async () => {
    const project = makeProject()
    const gone = spawnSync('true').pid!
    const namespace = /\[(\d+)]/.exec(readlinkSync('/proc/self/ns/pid'))![1]
    const folder = join(project.root, '.divio', 'running', 'local')
    mkdirSync(folder, {recursive: true})
    const stale = join(folder, `restore-${gone}-${namespace}-12345-abcdef`)
    writeFileSync(stale, '2026-12-01T00:00:00.000Z\n')
    const created = await cli(project, ['create', '--db-only'])
    expect(created.status, created.stderr).to.equal(0)
    expect(existsSync(stale)).to.equal(false)
  })

  it('a tick while an earlier tick of the environment still runs takes nothing, says which, and the next one takes the slot', async () => {
    const project = makeProject()
    writeEnvironments(project, {local: {schedule: {at: '02:00'}}})
    const clock = {DIVIO_BACKUP_NOW: '2026-12-03T02:30:00Z'}
    const {env, held} = holdingSqlite(project, 'backup')
    const first = started(project, {...env, ...clock}, ['schedule', 'run'])
    try {
      await until(() => isHeld(held), "the first tick's backup is reading the database")
      const storeFolder = join(project.store, 'shop', 'local')
      const before = listFiles(storeFolder)
      // Cron's next hour: the first backup is still running.
      const next = await cli(project, ['schedule', 'run', '--json'], clock)
      expect(next.status, next.stderr).to.equal(0)
      const result = next.json() as {running: {pid: number}; taken: unknown}
      expect(result.taken).to.equal(null)
      expect(result.running.pid).to.equal(first.child.pid)
      const said = await cli(project, ['schedule', 'run'], clock)
      expect(said.stdout).to.match(
        new RegExp(
          `^Nothing to take: the tick that started at .+ \\(process ${first.child.pid}\\) is still running on this machine`,
        ),
      )
      expect(listFiles(storeFolder), 'no backup was started').to.deep.equal(before)
    } finally {
      first.child.kill('SIGKILL')
      await first.exited
      if (existsSync(held)) process.kill(heldPid(held), 'SIGKILL')
    }

    await until(() => !marks(project), "the killed tick's marks are gone")
    const after = await cli(project, ['schedule', 'run', '--json'], clock)
    expect(after.status, after.stderr).to.equal(0)
    expect((after.json() as {taken: unknown}).taken).to.not.equal(null)
  })

  it("a tick is not held by another container's tick mark, whose process may have been killed with its guard", async () => {
    const project = makeProject()
    writeEnvironments(project, {local: {schedule: {at: '02:00'}}})
    const folder = join(project.root, '.divio', 'running', 'local')
    mkdirSync(folder, {recursive: true})
    // A young mark of a pid namespace that is not this one: whether its process lives, nobody here can tell.
    const foreign = join(folder, 'tick-4242-1-12345-abcdef')
    writeFileSync(foreign, `${new Date().toISOString()}\n`)
    const tick = await cli(project, ['schedule', 'run', '--json'], {DIVIO_BACKUP_NOW: '2026-12-03T02:30:00Z'})
    expect(tick.status, tick.stderr).to.equal(0)
    expect((tick.json() as {running: unknown; taken: unknown}).running).to.equal(null)
    expect((tick.json() as {taken: unknown}).taken).to.not.equal(null)
  })
})
