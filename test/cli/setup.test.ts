import {expect} from 'chai'
import {existsSync, mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {cli, makeProject, Project} from '../helpers/project.js'

interface Listed {
  app: string
  environment: string
  id: string
  trigger: string
}

const configOf = (project: Project) => JSON.parse(readFileSync(join(project.root, '.divio', 'backups.json'), 'utf8'))

/** From a fresh app to a nightly schedule, as the README's first steps take a new user. */
describe('setup: from zero to a schedule in one command', function () {
  it('init writes a minimal config, makes the store and the keys, prints the cron line; schedule run then takes the backup', async () => {
    const project = makeProject()
    const init = await cli(project, ['init', '--env', 'live', '--schedule', '02:00', '--timezone', 'Europe/Zurich'])
    expect(init.status, init.stderr).to.equal(0)
    // Only what was asked for: the app, the database, the media and the store keep their defaults.
    expect(configOf(project)).to.deep.equal({
      defaultEnvironment: 'live',
      environments: {live: {schedule: {at: '02:00', timezone: 'Europe/Zurich'}}},
    })
    expect(init.stderr).to.include(`Created a new store at ${project.store}.`)
    expect(init.stderr).to.include('A new encryption key was created')
    expect(existsSync(project.identityFile)).to.equal(true)
    expect(init.stdout).to.include(`\n  17 * * * * cd '${project.root}' && divio app backup schedule run -e live\n`)
    expect(init.stdout).to.include('OnCalendar=hourly')
    expect(init.stdout).to.include(`WorkingDirectory=${project.root}`)

    // The tick at 02:30 Zurich time takes the slot's backup, once.
    const clock = {DIVIO_BACKUP_NOW: '2026-12-03T01:30:00Z'}
    const tick = await cli(project, ['schedule', 'run'], clock)
    expect(tick.status, tick.stderr).to.equal(0)
    expect(tick.stdout).to.match(/^Backup \S+ of shop\/live is complete \(scheduled\)\./)
    expect(tick.stderr).to.not.include('Created a new store')
    const again = await cli(project, ['schedule', 'run'], clock)
    expect(again.status, again.stderr).to.equal(0)
    expect(again.stdout).to.match(/^Nothing to take/)
    const listed = (await cli(project, ['list', '--json'], clock)).json() as Listed[]
    expect(listed.map(({app, environment, trigger}) => ({app, environment, trigger}))).to.deep.equal([
      {app: 'shop', environment: 'live', trigger: 'scheduled'},
    ])
  })

  it('init refuses to replace a config unless --force, and --json gives the result', async () => {
    const project = makeProject()
    expect((await cli(project, ['init'])).status).to.equal(0)
    expect(configOf(project)).to.deep.equal({})
    const refused = await cli(project, ['init', '--env', 'live'])
    expect(refused.status).to.equal(6)
    expect(refused.stderr).to.match(/already exists; nothing was changed\.\nTry this: .*--force/)
    expect(configOf(project)).to.deep.equal({})

    const forced = await cli(project, ['init', '--env', 'live', '--app', 'shop2', '--force', '--json'])
    expect(forced.status, forced.stderr).to.equal(0)
    const result = forced.json() as {config: unknown; environment: {app: string; name: string}}
    expect(result.environment).to.deep.include({app: 'shop2', name: 'live'})
    expect(result.config).to.deep.equal(configOf(project))
  })

  it('init names the flag of a bad value, not the config file it did not write', async () => {
    const project = makeProject()
    const cases: Array<[string[], string]> = [
      [['--env', 'Bad!'], '--env'],
      [['--app', 'x y'], '--app'],
      [['--schedule', '25:00'], '--schedule'],
      [['--schedule', '02:00', '--timezone', 'Mars/Base'], '--timezone'],
      [['--store', 'ftp://x'], '--store'],
    ]
    for (const [flags, flag] of cases) {
      const refused = await cli(project, ['init', ...flags])
      expect(refused.status, flags.join(' ')).to.equal(2)
      expect(refused.stderr).to.match(new RegExp(`^Error: ${flag}: .*Nothing was written\\.\nTry this: `))
      expect(refused.stderr).not.to.include('backups.json')
      expect(existsSync(join(project.root, '.divio')), 'something was written').to.equal(false)
    }
  })

  it('init with a lost key refuses to make a new one where the store holds backups', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    renameSync(project.identityFile, `${project.identityFile}.away`)
    const refused = await cli(project, ['init'])
    expect(refused.status).to.equal(5)
    expect(refused.stderr).to.include('No new key was made.')
    expect(existsSync(project.identityFile)).to.equal(false)
    expect(existsSync(join(project.root, '.divio', 'backups.json')), 'a config was written').to.equal(false)
  })

  it('a config file keeps every zero-config default for what it leaves out', async () => {
    const project = makeProject()
    mkdirSync(join(project.root, '.divio'))
    writeFileSync(
      join(project.root, '.divio', 'backups.json'),
      JSON.stringify({environments: {live: {schedule: {at: '02:00'}}}}),
    )
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {app, components, environment} = created.json() as {
      app: string
      components: {database?: unknown; media?: unknown}
      environment: string
    }
    expect({app, environment}).to.deep.equal({app: 'shop', environment: 'live'})
    expect(components.database).to.not.equal(undefined)
    expect(components.media).to.not.equal(undefined)
    expect(existsSync(join(project.store, 'shop', 'live'))).to.equal(true)
  })

  it('run from a subfolder (media/), a command acts on the app, found upward as git finds its repository', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    const fromMedia = await cli({...project, root: join(project.root, 'media', 'uploads')}, ['list', '--json'])
    expect(fromMedia.status, fromMedia.stderr).to.equal(0)
    expect((fromMedia.json() as Listed[]).map(({app, environment}) => `${app}/${environment}`)).to.deep.equal([
      'shop/local',
    ])
  })

  it('an environment with no backups, in a store that holds others, gets a hint that names them', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'])).status).to.equal(0)
    expect((await cli(project, ['create'])).status).to.equal(0)
    expect((await cli(project, ['init', '--env', 'live'])).status).to.equal(0)
    const listed = await cli(project, ['list'])
    expect(listed.status).to.equal(0)
    expect(listed.stdout).to.match(/^No backups of shop\/live yet\./)
    expect(listed.stderr).to.include('hint: shop/live has no backups, but the store holds shop/local (2 backups).')
    expect(listed.stderr).to.include('Pass -e local')
  })
})
