import {expect} from 'chai'
import {mkdirSync, mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {redactDsn} from '../../src/config/dsn.js'
import {findAppFolder, loadEnvironment, requireParts} from '../../src/config/load.js'
import {BackupError} from '../../src/errors.js'

function project(config?: unknown): string {
  const root = mkdtempSync(join(tmpdir(), 'config-test-'))
  if (config !== undefined) {
    mkdirSync(join(root, '.divio'))
    writeFileSync(join(root, '.divio', 'backups.json'), typeof config === 'string' ? config : JSON.stringify(config))
  }

  return root
}

async function failure(action: () => Promise<unknown>): Promise<BackupError> {
  try {
    await action()
  } catch (error) {
    expect(error).to.be.instanceOf(BackupError)
    return error as BackupError
  }

  throw new Error('expected a BackupError')
}

const shop = {
  app: 'shop',
  defaultEnvironment: 'live',
  environments: {
    live: {database: '${DATABASE_URL}', media: 'media', store: 's3://shop-backups/shop/live?region=eu-central-1'},
    test: {database: 'sqlite:////srv/test.sqlite3', retention: {onDemand: {days: 7}}, store: './backups'},
  },
}

describe('config', () => {
  it('is found by walking up from a subfolder, with paths relative to the project root', async () => {
    const root = project(shop)
    mkdirSync(join(root, 'app', 'templates'), {recursive: true})
    const env = await loadEnvironment({cwd: join(root, 'app', 'templates'), environment: 'test', variables: {}})
    expect(env.app).to.equal('shop')
    expect(env.store).to.deep.equal({kind: 'local', path: join(root, 'backups')})
    expect(env.database).to.deep.equal({engine: 'sqlite', path: '/srv/test.sqlite3'})
    expect(env.retention.onDemand).to.deep.equal({days: 7, keepOlder: 3})
    expect(env.retention.scheduled).to.deep.equal({daily: 7, monthly: 12, weekly: 4, yearly: 0})
  })

  it('interpolates ${VAR} and picks defaultEnvironment', async () => {
    const env = await loadEnvironment({cwd: project(shop), variables: {DATABASE_URL: 'postgres://u:p@db/shop'}})
    expect(env.name).to.equal('live')
    expect(env.database?.engine).to.equal('postgres')
    expect(env.store.kind).to.equal('s3')
  })

  it('reports an unset variable with its JSON path, for the database or media where a command needs it', async () => {
    // Listing or verifying backups needs no database: the variable is asked for by what needs it.
    const env = await loadEnvironment({cwd: project(shop), variables: {}})
    expect(env.database).to.equal(undefined)
    expect(env.absent.database).to.equal('unset')
    expect(() => requireParts(env, {media: true})).to.not.throw()
    const error = await failure(async () => requireParts(env, {database: true}))
    expect(error.code).to.equal('CONFIG_VARIABLE_UNSET')
    expect(error.message).to.include('environments.live.database uses ${DATABASE_URL}')
    // Not a default in its place, even where one is found: db.sqlite3 is not the database it names.
    const root = project(shop)
    writeFileSync(join(root, 'db.sqlite3'), '')
    expect((await loadEnvironment({cwd: root, variables: {}})).database).to.equal(undefined)
    // Every command needs the store.
    const store = await failure(() =>
      loadEnvironment({cwd: project({environments: {live: {store: '${STORE}'}}}), variables: {}}),
    )
    expect(store.code).to.equal('CONFIG_VARIABLE_UNSET')
    expect(store.message).to.include('environments.live.store uses ${STORE}')
  })

  it('names the JSON path of a wrong type, and of an unknown key', async () => {
    const wrongType = await failure(() =>
      loadEnvironment({
        cwd: project({app: 'shop', environments: {live: {retention: {scheduled: {daily: 'seven'}}, store: 'x'}}}),
        variables: {},
      }),
    )
    expect(wrongType.message).to.match(/at environments\.live\.retention\.scheduled\.daily: .*expected number/)
    const unknownKey = await failure(() =>
      loadEnvironment({cwd: project({app: 'shop', environments: {live: {store: 'x', stroe: 'y'}}}), variables: {}}),
    )
    expect(unknownKey.message).to.match(/environments\.live.*stroe/)
  })

  it('refuses a retention policy that keeps nothing, and an unknown time zone', async () => {
    const keepsNothing = await failure(() =>
      loadEnvironment({
        cwd: project({
          app: 'shop',
          environments: {live: {retention: {scheduled: {daily: 0, monthly: 0, weekly: 0}}, store: 'x'}},
        }),
        variables: {},
      }),
    )
    expect(keepsNothing.message).to.match(/at environments\.live\.retention\.scheduled: this policy keeps nothing/)
    const badZone = await failure(() =>
      loadEnvironment({
        cwd: project({
          app: 'shop',
          environments: {live: {schedule: {at: '02:00', timezone: 'Mars/Olympus'}, store: 'x'}},
        }),
        variables: {},
      }),
    )
    expect(badZone.message).to.match(/at environments\.live\.schedule\.timezone: not an IANA time zone/)
  })

  it('rejects malformed JSON with a hint, and the line and column of the fault', async () => {
    const error = await failure(() => loadEnvironment({cwd: project('{"app": "shop",}'), variables: {}}))
    expect(error.code).to.equal('CONFIG_INVALID')
    expect(error.suggestion).to.include('JSON syntax')
    const trailing = await failure(() =>
      loadEnvironment({
        cwd: project('{\n  "app": "shop",\n  "environments": {"live": {"store": "b",}}\n}'),
        variables: {},
      }),
    )
    // Node.js 22 and later say the line themselves; 20 gives an offset, which is turned into one.
    expect(trailing.message).to.match(/\(line 3 column 42\)\.$/)
  })

  it('reads a config that starts with a byte order mark, as editors on Windows save it', async () => {
    const env = await loadEnvironment({
      cwd: project(`\uFEFF${JSON.stringify(shop)}`),
      variables: {DATABASE_URL: 'sqlite:////srv/live.sqlite3'},
    })
    expect(env).to.include({app: 'shop', name: 'live'})
  })

  it('says why a config file cannot be read: missing, a folder, or not readable by this user', async () => {
    const root = project()
    const missing = await failure(() => loadEnvironment({configPath: 'nope.json', cwd: root, variables: {}}))
    expect(missing.message).to.equal(`Cannot read the config file ${join(root, 'nope.json')}: it does not exist.`)
    mkdirSync(join(root, 'folder.json'))
    const folder = await failure(() => loadEnvironment({configPath: 'folder.json', cwd: root, variables: {}}))
    expect(folder.message).to.match(/: it is a folder\.$/)
    expect(folder.suggestion).to.include('--config')
  })

  it('lists the known environments for an unknown one, and asks for -e when there are several and no default', async () => {
    const unknown = await failure(() =>
      loadEnvironment({cwd: project(shop), environment: 'staging', variables: {DATABASE_URL: 'x'}}),
    )
    expect(unknown.code).to.equal('ENV_UNKNOWN')
    expect(unknown.suggestion).to.equal('Use one of: live, test.')
    const ambiguous = await failure(() =>
      loadEnvironment({cwd: project({...shop, defaultEnvironment: undefined}), variables: {DATABASE_URL: 'x'}}),
    )
    expect(ambiguous.suggestion).to.include('-e/--env')
  })

  it('takes --config instead of discovery', async () => {
    const root = project()
    writeFileSync(join(root, 'other.json'), JSON.stringify({app: 'other', environments: {only: {store: 'b'}}}))
    const env = await loadEnvironment({configPath: 'other.json', cwd: root, variables: {}})
    expect(env).to.include({app: 'other', name: 'only'})
    expect(env.store).to.deep.equal({kind: 'local', path: join(root, 'b')})
  })

  describe('embedded default (no config file)', () => {
    it('uses env local, db.sqlite3 and ./media when they exist, and ./.divio/backups', async () => {
      const root = project()
      writeFileSync(join(root, 'db.sqlite3'), '')
      mkdirSync(join(root, 'media'))
      const env = await loadEnvironment({cwd: root, variables: {}})
      expect(env.name).to.equal('local')
      expect(env.database).to.deep.equal({engine: 'sqlite', path: join(root, 'db.sqlite3')})
      expect(env.media).to.deep.equal({kind: 'filesystem', path: join(root, 'media')})
      expect(env.store).to.deep.equal({kind: 'local', path: join(root, '.divio', 'backups')})
      expect(env.configSource).to.equal('embedded default')
    })

    it('prefers DATABASE_URL, MEDIA_ROOT and DIVIO_BACKUP_STORE', async () => {
      const env = await loadEnvironment({
        cwd: project(),
        variables: {DATABASE_URL: 'mysql://u:p@db/x', DIVIO_BACKUP_STORE: '/srv/backups', MEDIA_ROOT: '/srv/media'},
      })
      expect(env.database?.engine).to.equal('mysql')
      expect(env.media).to.deep.equal({kind: 'filesystem', path: '/srv/media'})
      expect(env.store).to.deep.equal({kind: 'local', path: '/srv/backups'})
    })

    it("takes media from the platform's DEFAULT_STORAGE_DSN when MEDIA_ROOT is unset", async () => {
      const dsn = 's3://AKIAKEY:se%2Fcret@shop-media.s3.eu-central-1.amazonaws.com/?auth=s3v4&domain=x.example'
      const env = await loadEnvironment({cwd: project(), variables: {DEFAULT_STORAGE_DSN: dsn}})
      expect(env.media?.kind).to.equal('s3')
      expect(env.media?.kind === 's3' && env.media.location).to.include({bucket: 'shop-media', region: 'eu-central-1'})
      const preferred = await loadEnvironment({
        cwd: project(),
        variables: {DEFAULT_STORAGE_DSN: dsn, MEDIA_ROOT: '/srv/media'},
      })
      expect(preferred.media).to.deep.equal({kind: 'filesystem', path: '/srv/media'})
    })

    it('has no database or media when neither exists, and refuses other env names', async () => {
      const root = project()
      const env = await loadEnvironment({cwd: root, variables: {}})
      expect(env.database).to.equal(undefined)
      expect(env.media).to.equal(undefined)
      expect((await failure(() => loadEnvironment({cwd: root, environment: 'live', variables: {}}))).code).to.equal(
        'ENV_UNKNOWN',
      )
    })
  })

  it('refuses a store inside the media bucket: same service and bucket, under the media prefix', async () => {
    const media = 's3://AKIAKEY:secret@shop-media.s3.eu-central-1.amazonaws.com/?auth=s3v4&domain=x.example'
    const refused = ['s3://shop-media/backups/?region=eu-central-1', 's3://shop-media/?region=eu-central-1']
    for (const store of refused) {
      const error = await failure(() =>
        loadEnvironment({cwd: project(), variables: {DEFAULT_STORAGE_DSN: media, DIVIO_BACKUP_STORE: store}}),
      )
      expect(error.code).to.equal('CONFIG_INVALID')
      expect(error.message).to.match(
        /^The store s3:\/\/shop-media\/\S* is inside the media bucket s3:\/\/shop-media\/\.$/,
      )
      expect(error.message).not.to.include('secret')
    }

    const prefixed = 's3://shop-media/media/?region=eu-central-1'
    expect(
      (
        await failure(() =>
          loadEnvironment({
            cwd: project(),
            variables: {DEFAULT_STORAGE_DSN: prefixed, DIVIO_BACKUP_STORE: 's3://shop-media/media/bk/'},
          }),
        )
      ).code,
    ).to.equal('CONFIG_INVALID')
    const allowed = [
      's3://other-bucket/backups/?region=eu-central-1',
      's3://shop-media/media-backups/?region=eu-central-1',
      's3://shop-media/media/?endpoint=http://127.0.0.1:9000&forcePathStyle=true',
    ]
    for (const store of allowed) {
      const env = await loadEnvironment({
        cwd: project(),
        variables: {DEFAULT_STORAGE_DSN: prefixed, DIVIO_BACKUP_STORE: store},
      })
      expect(env.store.kind, store).to.equal('s3')
    }
  })

  describe('the app folder, found upward', () => {
    it('is the nearest folder with manage.py or .divio/backups, and stops below the home folder', async () => {
      const home = project()
      mkdirSync(join(home, '.divio', 'backups'), {recursive: true})
      const app = join(home, 'code', 'shop')
      mkdirSync(join(app, 'media', 'uploads'), {recursive: true})
      expect(await findAppFolder(join(app, 'media', 'uploads'), home)).to.equal(join(app, 'media', 'uploads'))
      writeFileSync(join(app, 'manage.py'), '')
      expect(await findAppFolder(join(app, 'media', 'uploads'), home)).to.equal(app)
      expect(await findAppFolder(home, home)).to.equal(home)
    })
  })

  it('redacts passwords and secret query values from DSNs', async () => {
    expect(redactDsn('postgres://shop:s3cret@db:5432/shop?sslmode=require')).to.equal(
      'postgres://shop:***@db:5432/shop?sslmode=require',
    )
    expect(redactDsn('s3://AKIA123:wJalr/XUtn@bucket.s3.eu-central-1.amazonaws.com/?auth=s3v4')).to.equal(
      's3://AKIA123:***@bucket.s3.eu-central-1.amazonaws.com/?auth=s3v4',
    )
    expect(redactDsn('https://host/x?token=abc&x=1')).to.equal('https://host/x?token=***&x=1')
  })
})
