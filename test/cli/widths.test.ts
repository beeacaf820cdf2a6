import {expect} from 'chai'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, CliResult, makeProject, writeEnvironments} from '../helpers/project.js'

/**
 * The lines of human output wider than `width`, with the command that printed them. A crontab entry
 * and a systemd unit's PATH are lines to copy as they are (neither may be split), so they are not
 * wrapped, and are not counted.
 */
function tooWide(args: string[], result: CliResult, width: number): string[] {
  expect(result.status, `${args.join(' ')}: ${result.stderr}`).to.equal(0)
  if (args.includes('--json')) return []
  return `${result.stdout}${result.stderr}`
    .split('\n')
    .filter((line) => [...line].length > width && !/^ {2}(?:\d+ \* \* \* \* |Environment="PATH=)/.test(line))
    .map((line) => `${args.join(' ')}: ${[...line].length} columns: ${line}`)
}

/**
 * Human output fits a terminal: 100 columns for every command, 80 for `list`, with notes, long
 * retention reasons and hashes in it. Errors are exempt: one unwrapped line each, so that logs and grep
 * keep them whole. The app is at /tmp/wXXXXXX/divio-backup-test-XXXXXX/shop, 42 characters: paths are
 * data, and one much longer than an app's usual folder can still take a line past the width.
 */
describe('output fits a terminal', function () {
  // Outside the run's own folder, whose path is longer (see above): removed here, with their keys.
  const folders: string[] = []
  const shortFolder = () => {
    const folder = mkdtempSync('/tmp/w')
    folders.push(folder)
    return folder
  }

  after(() => {
    for (const folder of folders) rmSync(folder, {force: true, recursive: true})
  })

  it('every command fits 100 columns, and list fits 80', async () => {
    const project = makeProject({under: shortFolder()})
    writeEnvironments(project, {
      live: {media: 'media', schedule: {at: '02:00', timezone: 'Europe/Zurich'}, store: './.divio/backups'},
      test: {database: 'sqlite:///test.sqlite3', media: 'test-media', store: './.divio/backups'},
    })
    mkdirSync(join(project.root, 'test-media'))
    writeFileSync(join(project.root, 'test-media', 'x.txt'), 'x')
    const clock = (day: number) => ({DIVIO_BACKUP_NOW: `2026-12-${String(day).padStart(2, '0')}T03:00:00Z`})
    const wide: string[] = []
    const run = async (args: string[], width = 100, env: NodeJS.ProcessEnv = clock(20)) => {
      const result = await cli(project, args, env)
      wide.push(...tooWide(args, result, width))
      return result
    }

    const note = 'before the migration of the orders table to the new schema, with a long explanation'
    const fresh = makeProject({under: shortFolder()})
    const init = ['init', '--env', 'live', '--schedule', '02:00', '--timezone', 'Europe/Zurich']
    wide.push(...tooWide(init, await cli(fresh, init), 100))
    for (let day = 1; day <= 9; day++) await run(['schedule', 'run'], 100, clock(day))
    await run(['create', '--note', note], 100, clock(10))
    await run(['create', '--db-only'], 100, clock(11))
    const [newest] = ((await run(['list', '--json'])).json() as Array<{id: string}>).map(({id}) => id)

    await run(['list'], 80)
    await run(['list', '--all'], 80)
    await run(['list', '--trigger', 'scheduled'], 80)
    await run(['info'])
    await run(['info', newest])
    await run(['verify'])
    await run(['verify', '--all'])
    await run(['verify', '--sample', '10'])
    await run(['download', 'latest', '-o', join(project.root, 'out')])
    await run(['export', '-o', join(project.root, 'export')])
    await run(['retention'])
    await run(['retention', '--simulate', '60'])
    await run(['schedule', 'show'])
    await run(['status'])
    await run(['drill'])
    await run(['list'], 80)
    await run(['info'])
    await run(['pin', newest])
    await run(['pin', newest])
    await run(['unpin', newest])
    await run(['prune', '--dry-run'], 100, clock(25))
    await run(['prune', '--confirm', 'live'], 100, clock(25))
    await run(['restore', 'latest', '--to-env', 'test', '--confirm', 'test', '--db-only'])
    await run(['delete', newest, '--confirm', 'live'])
    expect(wide).to.deep.equal([])
  })
})
