import {expect} from 'chai'
import {existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import {userInfo} from 'node:os'
import {join} from 'node:path'

import {cli, makeProject, Project, writeEnvironments, writerKeyFile} from '../helpers/project.js'

interface Listed {
  app: string
  environment: string
  id: string
  trigger: string
}

const configOf = (project: Project) => JSON.parse(readFileSync(join(project.root, '.divio', 'backups.json'), 'utf8'))

/** The recipient and the writer id that init reports. */
function keysOf(stdout: string): {recipients: string[]; writers: string[]} {
  return {
    recipients: [/^Recipient: (age1\w+)$/m.exec(stdout)![1]],
    writers: [/^Writer(?: \(new\))?: (divio-writer1\w+)$/m.exec(stdout)![1]],
  }
}

const backupsIn = (project: Project, environment: string) =>
  existsSync(join(project.store, 'shop', environment)) ? readdirSync(join(project.store, 'shop', environment)) : []

/** From a fresh app to a nightly schedule, as the README's first steps take a new user. */
describe('setup: from zero to a schedule in one command', function () {
  it('init writes a minimal config, makes the store and the keys, prints the cron line; schedule run then takes the backup', async () => {
    const project = makeProject()
    const path = '/opt/node 22/bin:relative/bin:/usr/bin:/bin:/usr/bin'
    const init = await cli(project, ['init', '--env', 'live', '--schedule', '02:00', '--timezone', 'Europe/Zurich'], {
      PATH: `${path}:${process.env.PATH}`,
    })
    expect(init.status, init.stderr).to.equal(0)
    // What was asked for, and what the rest resolved to here: a tick under cron finds the same.
    const {recipients, writers} = keysOf(init.stdout)
    expect(configOf(project)).to.deep.equal({
      app: 'shop',
      defaultEnvironment: 'live',
      environments: {
        live: {
          database: 'sqlite:///db.sqlite3',
          encryption: {recipients, writers},
          media: 'media',
          schedule: {at: '02:00', timezone: 'Europe/Zurich'},
          store: join('.divio', 'backups'),
        },
      },
    })
    expect(init.stderr).to.include(`Created a new store at ${project.store}.`)
    expect(init.stderr).to.include('A new encryption key was created')
    expect(existsSync(project.identityFile)).to.equal(true)
    // This shell's PATH goes along (cron's own is /usr/bin:/bin), its absolute entries once each.
    const cron = /^ {2}17 \* \* \* \* cd '(.*)' && PATH='(.*)' divio app backup schedule run -e live$/m.exec(
      init.stdout,
    )
    expect(cron?.[1], init.stdout).to.equal(project.root)
    const cronPath = cron![2].split(':')
    expect(cronPath.slice(0, 3)).to.deep.equal(['/opt/node 22/bin', '/usr/bin', '/bin'])
    expect(cronPath).to.not.include('relative/bin')
    expect(new Set(cronPath).size).to.equal(cronPath.length)
    expect(init.stdout).to.include('OnCalendar=hourly')
    expect(init.stdout).to.include(`WorkingDirectory=${project.root}`)
    expect(init.stdout).to.include(`\n  User=${userInfo().username}\n`)
    expect(init.stdout).to.include(`\n  Environment="PATH=${cron![2]}"\n`)
    expect(init.stdout, 'no variable to pass on').to.not.include('The tick reads')

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
    const first = configOf(project)
    expect(Object.keys(first.environments)).to.deep.equal(['local'])
    const refused = await cli(project, ['init', '--env', 'live'])
    expect(refused.status).to.equal(6)
    expect(refused.stderr).to.match(/already exists; nothing was changed\.\nTry this: .*--force/)
    expect(configOf(project)).to.deep.equal(first)

    const forced = await cli(project, ['init', '--env', 'live', '--app', 'shop2', '--force', '--json'])
    expect(forced.status, forced.stderr).to.equal(0)
    const result = forced.json() as {config: unknown; environment: {app: string; name: string}}
    expect(result.environment).to.deep.include({app: 'shop2', name: 'live'})
    expect(result.config).to.deep.equal(configOf(project))
    // A media format is written only when a variable chose it, which the tick that cron starts lacks.
    expect(configOf(project).environments.live).to.not.have.property('mediaFormat')
    const packed = await cli(project, ['init', '--env', 'live', '--force'], {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'})
    expect(packed.status, packed.stderr).to.equal(0)
    expect(configOf(project).environments.live).to.include({mediaFormat: 'packs'})
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

  it("a tick as another user, or without the shell's variables, encrypts to the owner and fails by name where it lacks what init saw", async () => {
    const project = makeProject()
    // The database is outside the app folder, found through DATABASE_URL, as on the platform.
    const database = join(project.home, '..', 'app.sqlite3')
    renameSync(join(project.root, 'db.sqlite3'), database)
    const DATABASE_URL = `sqlite:///${database}`
    const init = await cli(project, ['init', '--env', 'live', '--schedule', '02:00'], {DATABASE_URL})
    expect(init.status, init.stderr).to.equal(0)
    expect(configOf(project).environments.live).to.deep.include({
      database: '${DATABASE_URL}',
      encryption: keysOf(init.stdout),
    })
    expect(init.stdout).to.include('The tick reads DATABASE_URL from the environment, which cron and systemd')
    const clock = {DIVIO_BACKUP_NOW: '2026-12-03T02:30:00Z'}

    // cron's environment has no DATABASE_URL: the tick fails, naming it, where it took the media alone.
    const bare = await cli(project, ['schedule', 'run'], clock)
    expect(bare.status).to.equal(2)
    expect(bare.stderr).to.include('uses ${DATABASE_URL}, which is not set.')

    // A systemd unit without User= runs as root: a home without keys. It made a key of its own for
    // the backups, which nobody had; now it encrypts to the owner's, and stops at the writer key.
    const otherHome = join(project.home, '..', 'root-home')
    mkdirSync(otherHome)
    const asRoot = await cli(project, ['schedule', 'run'], {...clock, DATABASE_URL, HOME: otherHome})
    expect(asRoot.status).to.equal(5)
    expect(asRoot.stderr).to.include('This user had no writer key, so one was made at').and.include('User= in the unit')
    const refusal = asRoot.stderr.slice(asRoot.stderr.indexOf('Error: '))
    expect(refusal, 'the variable does not override the config').to.not.include('DIVIO_BACKUP_WRITERS')
    expect(existsSync(join(otherHome, '.config', 'divio', 'backup-identity.txt')), 'a key nobody kept').to.equal(false)
    expect(backupsIn(project, 'live')).to.deep.equal([])

    // With the owner's writer key, the tick's backup is the owner's to verify and restore.
    const signed = {...clock, DATABASE_URL, DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project), HOME: otherHome}
    const tick = await cli(project, ['schedule', 'run'], signed)
    expect(tick.status, tick.stderr).to.equal(0)
    expect(tick.stdout).to.match(/^ {2}database {2}sqlite/m)
    // A host that watches the store needs no DATABASE_URL; a restore does, and names it.
    for (const args of [['verify'], ['status', '--max-age', '26h'], ['list']]) {
      const watched = await cli(project, args, clock)
      expect(watched.status, `${args.join(' ')}: ${watched.stderr}`).to.equal(0)
    }

    const restore = await cli(project, ['restore', 'latest', '--confirm', 'live'], clock)
    expect(restore.status).to.equal(2)
    expect(restore.stderr).to.include('uses ${DATABASE_URL}, which is not set.')
    expect((await cli(project, ['restore', 'latest', '--confirm', 'live', '--media-only'], clock)).status).to.equal(0)
  })

  it('a backup that finds no database where earlier ones held one fails, naming what is missing, unless told', async () => {
    const project = makeProject()
    const database = join(project.home, '..', 'app.sqlite3')
    renameSync(join(project.root, 'db.sqlite3'), database)
    const DATABASE_URL = `sqlite:///${database}`
    expect((await cli(project, ['create'], {DATABASE_URL})).status).to.equal(0)
    const before = backupsIn(project, 'local')

    const lacking = await cli(project, ['create'])
    expect(lacking.status).to.equal(7)
    expect(lacking.stderr).to.match(
      /^Error: Backups of shop\/local hold the database \(the newest: \S+\), but this run finds none: there is no config file, DATABASE_URL is not set, and there is no db\.sqlite3 in \S+\. Nothing was backed up\.\nTry this: Run it where DATABASE_URL is set/,
    )
    expect(lacking.stderr).to.include('"database": "none"').and.include('--media-only')
    expect(backupsIn(project, 'local')).to.deep.equal(before)

    // Asked for by a flag: the media alone. That says nothing of the next backup.
    expect((await cli(project, ['create', '--media-only'])).status).to.equal(0)
    expect((await cli(project, ['create'])).status).to.equal(7)

    // Said in the config: this environment has no database any more.
    writeEnvironments(project, {local: {database: 'none'}})
    const told = await cli(project, ['create', '--json'])
    expect(told.status, told.stderr).to.equal(0)
    expect((told.json() as {components: object}).components).to.have.keys('media')

    // The media, the same way, for a tick too.
    writeEnvironments(project, {local: {schedule: {at: '02:00'}}})
    renameSync(join(project.root, 'media'), join(project.root, 'media.away'))
    const noMedia = await cli(project, ['schedule', 'run'], {DATABASE_URL, DIVIO_BACKUP_NOW: '2026-12-03T02:30:00Z'})
    expect(noMedia.status).to.equal(7)
    expect(noMedia.stderr).to.include(`${join(project.root, '.divio', 'backups.json')} sets no "media", MEDIA_ROOT and`)
    expect(noMedia.stderr, noMedia.stderr)
      .to.include('MEDIA_ROOT or DEFAULT_STORAGE_DSN is set')
      .and.include('--db-only')
  })
})
