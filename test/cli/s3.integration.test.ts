import {CreateMultipartUploadCommand, HeadObjectCommand} from '@aws-sdk/client-s3'
import {expect} from 'chai'
import {execFile, execFileSync, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {rootCertificates} from 'node:tls'
import {promisify} from 'node:util'

import {Fault, FaultyProxy, ProxiedRequest} from '../helpers/faulty-proxy.js'
import {mountTmpfs} from '../helpers/mounts.js'
import {watch} from '../helpers/processes.js'
import {
  cli,
  cliAsync,
  cliInBackground,
  makeProject,
  Project,
  repoRoot,
  settleChangeTimes,
  snapshotTree,
} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'
import {openTestDatabase} from '../helpers/sqlite.js'
import {requireTool, writeRandomFile} from '../helpers/tools.js'

const MiB = 1024 * 1024
const execFileAsync = promisify(execFile)
const ID = /^\d{8}T\d{6}Z-[a-z2-7]{6}$/

interface Created {
  id: string
}

describe('S3 store through the CLI (s3rver)', function () {
  let s3: TestS3
  let buckets = 0

  before(async () => {
    s3 = await TestS3.start()
  })

  after(async () => {
    await s3?.stop()
  })

  /** A project whose store is a fresh bucket, reached directly or through `endpoint` (a proxy). */
  async function s3Project(endpoint?: string): Promise<{bucket: string; project: Project}> {
    const bucket = `backups-${++buckets}`
    await s3.createBucket(bucket)
    const project = makeProject()
    // Over two parts (5 MiB each), so that media goes up as a multipart upload of three.
    writeRandomFile(join(project.root, 'media', 'video.bin'), 11 * MiB)
    project.env.DIVIO_BACKUP_STORE = s3.dsn(bucket, 'divio', endpoint ? {endpoint} : {})
    return {bucket, project}
  }

  it("init names the AWS variables a bucket's credentials come from, which the tick needs too", async () => {
    const bucket = `backups-${++buckets}`
    await s3.createBucket(bucket)
    const project = makeProject()
    // Machines often set these to the system's bundle (this one does); here, none reaches S3 but the AWS chain.
    const unset = {AWS_CA_BUNDLE: '', NODE_EXTRA_CA_CERTS: ''}
    const aws = {...unset, AWS_ACCESS_KEY_ID: TestS3.accessKeyId, AWS_SECRET_ACCESS_KEY: TestS3.secretAccessKey}
    const store = `s3://${bucket}/shop?${new URLSearchParams({endpoint: s3.endpoint, region: 'us-east-1'})}`
    const init = await cli(project, ['init', '--env', 'live', '--store', store, '--schedule', '02:00'], aws)
    expect(init.status, init.stderr).to.equal(0)
    expect(init.stdout).to.include('The tick reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment')
    const tick = await cli(project, ['schedule', 'run'], {AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: ''})
    expect(tick.status).to.equal(7)
    expect(tick.stderr).to.include('no AWS credentials were found')

    // A DSN that carries them needs none: only the variable that holds it.
    const inline = makeProject()
    const withCredentials = await cli(inline, ['init', '--env', 'live', '--force'], {
      ...aws,
      DIVIO_BACKUP_STORE: s3.dsn(bucket, 'inline'),
    })
    expect(withCredentials.status, withCredentials.stderr).to.equal(0)
    expect(withCredentials.stdout).to.include('The tick reads DIVIO_BACKUP_STORE from the environment')
    expect(withCredentials.stdout).to.not.include('AWS_ACCESS_KEY_ID')

    // How this shell reaches S3 (a private authority, a proxy) the tick needs too; a folder store does not.
    const bundle = join(inline.root, 'ca.pem')
    writeFileSync(bundle, rootCertificates[0])
    const connection = {
      ...unset,
      AWS_CA_BUNDLE: bundle,
      HTTPS_PROXY: 'http://proxy.example:3128',
      NO_PROXY: '127.0.0.1',
    }
    const reached = await cli(inline, ['init', '--env', 'live', '--force'], {
      ...connection,
      DIVIO_BACKUP_STORE: s3.dsn(bucket, 'inline'),
    })
    expect(reached.status, reached.stderr).to.equal(0)
    expect(reached.stdout).to.include(
      'The tick reads DIVIO_BACKUP_STORE, AWS_CA_BUNDLE, HTTPS_PROXY and NO_PROXY from the environment',
    )
    const folder = await cli(makeProject(), ['init', '--env', 'live'], connection)
    expect(folder.status, folder.stderr).to.equal(0)
    expect(folder.stdout).to.not.match(/AWS_CA_BUNDLE|HTTPS_PROXY/)
  })

  it('round trip: create, list, verify, download; objects named as docs/storage.md says and stored as STANDARD_IA', async () => {
    const {bucket, project} = await s3Project()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as Created
    expect(id).to.match(ID)
    expect(created.stdout + created.stderr).to.not.include(TestS3.secretAccessKey)

    const listed = await cli(project, ['list', '--json'])
    expect(listed.status, listed.stderr).to.equal(0)
    expect((listed.json() as Created[]).map((backup) => backup.id)).to.deep.equal([id])

    const verified = await cli(project, ['verify', id, '--json'])
    expect(verified.status, verified.stderr).to.equal(0)

    const info = await cli(project, ['info', id, '--json'])
    expect((info.json() as {store: unknown}).store).to.deep.equal({
      location: `s3://${TestS3.accessKeyId}:***@${bucket}/divio?endpoint=${encodeURIComponent(s3.endpoint)}`,
      storageClass: 'STANDARD_IA',
    })

    const names = ['database.sqlite3.zst.age', 'manifest.json', 'media.manifest.json.age', 'media.tar.age']
    expect(await s3.keys(bucket)).to.deep.equal(names.map((name) => `divio/shop/local/${id}/${name}`))
    const client = s3.client()
    for (const name of names) {
      const head = await client.send(new HeadObjectCommand({Bucket: bucket, Key: `divio/shop/local/${id}/${name}`}))
      expect(head.StorageClass, name).to.equal('STANDARD_IA')
    }

    const writes = s3.requests.filter(
      (request) =>
        request.path.startsWith(`/${bucket}/divio/`) &&
        ((request.method === 'PUT' && request.query.uploadId === undefined) ||
          (request.method === 'POST' && 'uploads' in request.query)),
    )
    expect(writes.length).to.be.at.least(names.length)
    for (const write of writes) expect(write.headers['x-amz-server-side-encryption'], write.path).to.equal('AES256')
    expect(s3.requests.some((request) => request.query.partNumber === '3')).to.equal(true)

    const out = join(project.root, 'downloaded')
    const downloaded = await cli(project, ['download', id, '-o', out])
    expect(downloaded.status, downloaded.stderr).to.equal(0)
    const original = openTestDatabase(join(project.root, 'db.sqlite3'), {readonly: true})
    const copy = openTestDatabase(join(out, 'database.sqlite3'), {readonly: true})
    const rows = 'SELECT group_concat(id || username || email) AS rows FROM auth_user'
    expect(copy.prepare(rows).get()).to.deep.equal(original.prepare(rows).get())
    original.close()
    copy.close()
    const extracted = join(project.root, 'extracted')
    mkdirSync(extracted)
    execFileSync('tar', ['-xf', join(out, 'media.tar'), '-C', extracted])
    expect(snapshotTree(join(extracted, 'media'))).to.deep.equal(snapshotTree(join(project.root, 'media')))
  })

  it('without credentials in the DSN, the standard AWS chain finds them: the environment, or a profile of the credentials file', async () => {
    // The chain's providers are loaded lazily, from chunks of the bundle: this is the path most users
    // take, with keys in the environment, a profile, or a role.
    const bucket = `backups-${++buckets}`
    await s3.createBucket(bucket)
    const project = makeProject()
    const withoutAws = Object.fromEntries(Object.entries(project.env).filter(([name]) => !name.startsWith('AWS_')))
    const credentialsFile = join(project.home, 'aws-credentials')
    writeFileSync(
      credentialsFile,
      `[default]\naws_access_key_id = AKIAWRONGWRONG\naws_secret_access_key = wrong\n\n[backups]\naws_access_key_id = ${TestS3.accessKeyId}\naws_secret_access_key = ${TestS3.secretAccessKey}\n`,
    )
    const base = {
      ...withoutAws,
      AWS_CONFIG_FILE: join(project.home, 'no-aws-config'),
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_SHARED_CREDENTIALS_FILE: credentialsFile,
      DIVIO_BACKUP_STORE: `s3://${bucket}/divio?endpoint=${encodeURIComponent(s3.endpoint)}`,
    }
    // A process of its own: in the test process, another test may already have loaded those chunks.
    const run = (args: string[], env: NodeJS.ProcessEnv) => cliInBackground({...project, env}, args)

    const fromEnvironment = await run(['create', '--json'], {
      ...base,
      AWS_ACCESS_KEY_ID: TestS3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TestS3.secretAccessKey,
    })
    expect(fromEnvironment.status, fromEnvironment.stderr).to.equal(0)
    const {id} = fromEnvironment.json() as Created

    const fromProfile = await run(['list', '--json'], {...base, AWS_PROFILE: 'backups'})
    expect(fromProfile.status, fromProfile.stderr).to.equal(0)
    expect((fromProfile.json() as Created[]).map((backup) => backup.id)).to.deep.equal([id])

    // The default profile's keys are wrong, and without AWS_PROFILE they are the ones used: S3 refuses
    // them, and the error says where to look.
    const refused = await run(['list'], base)
    expect(refused.status, refused.stderr).to.equal(7)
    expect(refused.stderr).to.match(/S3 refused the credentials/)
    expect(refused.stderr).to.include('the profile')
    expect(refused.stdout + refused.stderr).to.not.include(TestS3.secretAccessKey)
  })

  it('url prints a time-limited link to each object: curl | age -d gives what download gives', async function () {
    requireTool(this, 'curl', 'curl')
    requireTool(this, 'age', 'age')
    const {project} = await s3Project()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as Created

    const linked = await cli(project, ['url', id, '--expires', '600', '--json'])
    expect(linked.status, linked.stderr).to.equal(0)
    const urls = linked.json() as {expiresAt: string; id: string; objects: {bytes: number; name: string; url: string}[]}
    expect(urls.id).to.equal(id)
    expect(new Date(urls.expiresAt).getTime() - Date.now()).to.be.within(590_000, 600_000)
    expect(urls.objects.map((object) => object.name)).to.deep.equal([
      'manifest.json',
      'database.sqlite3.zst.age',
      'media.tar.age',
      'media.manifest.json.age',
    ])
    for (const object of urls.objects) {
      expect(object.url).to.include('X-Amz-Expires=600').and.to.include('X-Amz-Signature=')
      expect(object.url, 'a link carries no secret key').to.not.include(TestS3.secretAccessKey)
    }

    const out = join(project.root, 'downloaded')
    expect((await cli(project, ['download', id, '-o', out])).status).to.equal(0)
    // Asynchronous: s3rver answers from this process, so a blocking child would wait for itself.
    const fetchAndDecrypt = async (name: string, decrypt: boolean): Promise<Buffer> => {
      const {url} = urls.objects.find((object) => object.name === name)!
      const pipeline = decrypt ? `curl -sSf "$URL" | age -d -i "$IDENTITY"` : 'curl -sSf "$URL"'
      const {stdout} = await execFileAsync('bash', ['-c', `set -o pipefail; ${pipeline}`], {
        encoding: 'buffer',
        env: {IDENTITY: project.identityFile, PATH: process.env.PATH, URL: url},
        maxBuffer: 64 * MiB,
      })
      return stdout
    }

    const manifest = JSON.parse((await fetchAndDecrypt('manifest.json', false)).toString()) as {id: string}
    expect(manifest.id).to.equal(id)
    for (const [name, file] of [
      ['database.sqlite3.zst.age', 'database.sqlite3'],
      ['media.tar.age', 'media.tar'],
    ]) {
      const fetched = await fetchAndDecrypt(name, true)
      const plain = name.endsWith('.zst.age') ? execFileSync('zstd', ['-dcq'], {input: fetched}) : fetched
      expect(plain.equals(readFileSync(join(out, file))), name).to.equal(true)
    }

    const human = await cli(project, ['url', id])
    expect(human.stdout).to.match(new RegExp(`^Links to backup ${id}, valid until \\S+\\. Anyone with a link`))
    // Names padded to the longest, database.sqlite3.zst.age.
    expect(human.stdout).to.match(/^ {2}media\.tar\.age {13}http:\/\/\S+:\d+\/\S+$/m)
    const tooLong = await cli(project, ['url', id, '--expires', '604801'])
    expect(tooLong.status).to.equal(2)
  })

  it('url for incremental media links every pack, and its printed recipe rebuilds the media from the links alone', async function () {
    requireTool(this, 'curl', 'curl')
    requireTool(this, 'age', 'age')
    const {project} = await s3Project()
    const packed = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}
    expect((await cli(project, ['create', '--media-only'], packed)).status).to.equal(0)
    writeFileSync(join(project.root, 'media', 'added.bin'), randomBytes(300_000))
    const created = await cli(project, ['create', '--media-only', '--json'], packed)
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as Created
    const tree = snapshotTree(join(project.root, 'media'))
    const linked = await cli(project, ['url', id, '--json'], packed)
    expect(linked.status, linked.stderr).to.equal(0)
    const urls = linked.json() as {objects: {name: string; url: string}[]; recipe: string}
    const manifest = JSON.parse(
      (await execFileAsync('curl', ['-sSf', urls.objects[0].url], {encoding: 'utf8'})).stdout,
    ) as {components: {media: {packs: string[]}}}
    // Both backups' packs: the second builds on the first's.
    expect(manifest.components.media.packs.length).to.be.at.least(2)
    expect(urls.objects.map((object) => object.name)).to.include.members(
      manifest.components.media.packs.map((pack) => `packs/${pack}`),
    )
    const human = await cli(project, ['url', id], packed)
    // The same script (links are signed anew on each run).
    for (const line of urls.recipe.split('\n').filter((text) => !text.startsWith('curl ')))
      expect(human.stdout).to.include(line)
    const script = join(project.root, 'from-links.sh')
    const target = join(project.root, 'rebuilt')
    writeFileSync(script, urls.recipe.replace(/^KEY=.*$/m, `KEY='${project.identityFile}' OUT='${target}'`))
    // With nothing but the links: no store credentials, no tool.
    await execFileAsync('sh', [script], {env: {PATH: process.env.PATH}})
    expect(snapshotTree(target)).to.deep.equal(tree)
  })

  it('incremental media (packs) in an S3 store: an unchanged re-backup uploads no pack, and both restore', async () => {
    const {bucket, project} = await s3Project()
    const packed = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}
    await settleChangeTimes()
    const first = await cli(project, ['create', '--media-only', '--json'], packed)
    expect(first.status, first.stderr).to.equal(0)
    const packsAfterFirst = (await s3.keys(bucket)).filter((key) => key.includes('/packs/'))
    expect(packsAfterFirst.length).to.be.at.least(2)
    // Each pack was staged in a file and sent in one PutObject, with no part buffers.
    const packRequests = s3.requests.filter(({path}) => path.includes('/packs/'))
    expect(packRequests.filter(({query}) => 'uploads' in query || 'partNumber' in query)).to.deep.equal([])
    expect(packRequests.filter(({method}) => method === 'PUT').length).to.be.at.least(packsAfterFirst.length)
    const second = await cli(project, ['create', '--media-only', '--json', '--verbose'], packed)
    expect(second.status, second.stderr).to.equal(0)
    expect(second.stderr).to.match(/ 0 read, \d+ unchanged and not read; 0 B of new blobs in 0 new pack/)
    expect((await s3.keys(bucket)).filter((key) => key.includes('/packs/'))).to.deep.equal(packsAfterFirst)
    const tree = snapshotTree(join(project.root, 'media'))
    rmSync(join(project.root, 'media'), {recursive: true})
    mkdirSync(join(project.root, 'media'))
    const {id} = second.json() as Created
    const restored = await cli(project, ['restore', id, '--confirm', 'local', '--no-safety-backup'], packed)
    expect(restored.status, restored.stderr).to.equal(0)
    expect(snapshotTree(join(project.root, 'media'))).to.deep.equal(tree)
  })

  it("repacking leaves packs younger than Standard-IA's 30 billed days alone, and rewrites them after", async () => {
    const {project} = await s3Project()
    const packed = {DIVIO_BACKUP_MEDIA_FORMAT: 'packs'}
    const first = await cli(project, ['create', '--media-only', '--json'], packed)
    expect(first.status, first.stderr).to.equal(0)
    // The video is replaced: its old blobs die, and the pack they share with the small files is mostly dead.
    writeRandomFile(join(project.root, 'media', 'video.bin'), 11 * MiB)
    expect((await cli(project, ['create', '--media-only'], packed)).status).to.equal(0)
    const {id} = first.json() as Created
    expect((await cli(project, ['delete', id, '--confirm', 'local'])).status).to.equal(0)
    const prune = async (extra: NodeJS.ProcessEnv = {}) => {
      const result = await cli(project, ['prune', '--confirm', 'local', '--json'], {...packed, ...extra})
      expect(result.status, result.stderr).to.equal(0)
      return (result.json() as {packs: {repacked: {deferred: number; from: string[]}}}).packs.repacked
    }

    const young = await prune()
    expect(young).to.include({deferred: 1})
    expect(young.from).to.deep.equal([])
    const month = await prune({DIVIO_BACKUP_NOW: new Date(Date.now() + 31 * 86_400_000).toISOString()})
    expect(month).to.include({deferred: 0})
    expect(month.from).to.have.length(1)
    // The copy went up staged in a file, as a create's packs do, and what is left reads back whole.
    const verified = await cli(project, ['verify', '--all', '--json'], packed)
    expect(verified.status, verified.stderr).to.equal(0)
  })

  it('transient 500, 503 SlowDown and connection resets: the backup still completes and verifies', async () => {
    const counts = new Map<string, number>()
    // The first request of each kind fails once, in turn: every operation of the backup meets a fault.
    const plan: Fault[] = [
      {code: 'SlowDown', status: 503},
      'reset',
      {code: 'InternalError', status: 500},
      {code: 'ServiceUnavailable', status: 503},
    ]
    let next = 0
    const proxy = await FaultyProxy.start(s3.port, (request) => {
      const kind = operationOf(request)
      const seen = (counts.get(kind) ?? 0) + 1
      counts.set(kind, seen)
      if (seen !== 1) return
      if (kind === 'get') return 'cut'
      return plan[next++ % plan.length]
    })
    try {
      const {bucket, project} = await s3Project(proxy.endpoint)
      const created = await cli(project, ['create', '--json'])
      expect(created.status, created.stderr).to.equal(0)
      const {id} = created.json() as Created
      const verified = await cli(project, ['verify', id, '--json'])
      expect(verified.status, verified.stderr).to.equal(0)

      const injected = proxy.injected.map(({fault, request}) => `${operationOf(request)}: ${faultName(fault)}`)
      for (const operation of ['put', 'create-upload', 'part', 'complete-upload', 'list', 'get']) {
        expect(
          injected.some((line) => line.startsWith(`${operation}:`)),
          `${operation} in ${injected}`,
        ).to.equal(true)
      }

      for (const fault of ['SlowDown', 'reset', 'InternalError', 'ServiceUnavailable', 'cut']) {
        expect(
          injected.some((line) => line.endsWith(fault)),
          `${fault} in ${injected}`,
        ).to.equal(true)
      }

      expect(await s3.uploads(bucket)).to.deep.equal([])
    } finally {
      await proxy.stop()
    }
  })

  it('packs that cannot be read for a broken connection: verify and restore exit 7 naming S3, never a damaged backup', async () => {
    const {bucket, project} = await s3Project()
    project.env.DIVIO_BACKUP_MEDIA_FORMAT = 'packs'
    const created = await cli(project, ['create', '--media-only', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const {id} = created.json() as Created
    // Every read of a pack is cut half-way through its body, however often it is tried.
    const proxy = await FaultyProxy.start(s3.port, ({method, path}) =>
      method === 'GET' && path.includes('/packs/') ? 'cut' : undefined,
    )
    try {
      const before = snapshotTree(join(project.root, 'media'))
      project.env.DIVIO_BACKUP_STORE = s3.dsn(bucket, 'divio', {endpoint: proxy.endpoint})
      // A sample reads whole packs (checkPack); a restore reads blobs through the pack reader.
      for (const args of [
        ['verify', id, '--sample', '100'],
        ['restore', id, '--media-only', '--confirm', 'local', '--no-safety-backup'],
      ]) {
        const result = await cli(project, args)
        expect(result.status, `${args[0]}: ${result.stderr}`).to.equal(7)
        expect(result.stderr, args[0]).to.match(/s3:\/\//)
        expect(result.stderr, args[0]).to.not.match(/failed verification|Verification failed|damaged|INTEGRITY/i)
      }

      expect(proxy.injected.length).to.be.above(0)
      expect(snapshotTree(join(project.root, 'media'))).to.deep.equal(before)
    } finally {
      await proxy.stop()
    }
  })

  it('a persistent failure: exit 7, a clear message, no manifest and no open multipart upload', async () => {
    const proxy = await FaultyProxy.start(s3.port, (request) =>
      operationOf(request) === 'part' && request.query.get('partNumber') === '2'
        ? {code: 'InternalError', status: 500}
        : undefined,
    )
    try {
      const {bucket, project} = await s3Project(proxy.endpoint)
      const created = await cli(project, ['create', '--json'])
      expect(created.status, created.stderr).to.equal(7)
      const {error} = created.json() as {error: {code: string; message: string; suggestion: string}}
      expect(error.code).to.equal('STORE_UNAVAILABLE')
      expect(error.message).to.match(
        /^Backup \S+ failed and was not committed: Cannot write shop\/local\/\S+\/media\.tar\.age at s3:\/\/AKIATESTBACKUPS:\*\*\*@backups-\d+\/divio\?endpoint=\S+: InternalError \(HTTP 500\): injected by the test\.$/,
      )
      expect(error.suggestion).to.match(/tried 8 times/)
      expect(proxy.injected.length).to.equal(8)
      for (const secret of [TestS3.secretAccessKey, encodeURIComponent(TestS3.secretAccessKey)])
        expect(created.stdout + created.stderr).to.not.include(secret)
      expect((await s3.keys(bucket)).filter((key) => key.endsWith('manifest.json'))).to.deep.equal([])
      expect(await s3.uploads(bucket)).to.deep.equal([])
    } finally {
      await proxy.stop()
    }
  })

  it('prune aborts multipart uploads older than the grace period, and leaves younger ones', async () => {
    const {bucket, project} = await s3Project()
    const created = await cli(project, ['create', '--json'])
    expect(created.status, created.stderr).to.equal(0)
    const client = s3.client()
    const abandoned = 'divio/shop/local/20261101T020000Z-aaaaaa/media.tar.age'
    await client.send(new CreateMultipartUploadCommand({Bucket: bucket, Key: abandoned}))
    expect(await s3.uploads(bucket)).to.deep.equal([abandoned])

    const soon = await cli(project, ['prune', '--confirm', 'local', '--json'])
    expect(soon.status, soon.stderr).to.equal(0)
    expect(await s3.uploads(bucket)).to.deep.equal([abandoned])

    const later = new Date(Date.now() + 25 * 3600 * 1000).toISOString()
    const pruned = await cli(project, ['prune', '--confirm', 'local', '--json'], {DIVIO_BACKUP_NOW: later})
    expect(pruned.status, pruned.stderr).to.equal(0)
    const {remove} = pruned.json() as {remove: {id: string; reason: string}[]}
    expect(remove.map((entry) => entry.id)).to.deep.equal(['20261101T020000Z-aaaaaa'])
    expect(remove[0].reason).to.match(/^incomplete, untouched for/)
    expect(await s3.uploads(bucket)).to.deep.equal([])
  })

  it('SIGINT during a multipart upload: exit 130, the upload aborted, nothing committed', async () => {
    const {bucket, project} = await s3Project()
    writeRandomFile(join(project.root, 'media', 'video.bin'), 200 * MiB)
    const seen = s3.requests.length
    const run = watch(cliAsync(project, ['create', '--json']))
    const partSent = () =>
      s3.requests.slice(seen).some((request) => request.path.startsWith(`/${bucket}/`) && request.query.partNumber)
    for (let waited = 0; !partSent() && waited < 60_000; waited += 20) await sleep(20)
    expect(partSent(), 'no part was ever uploaded').to.equal(true)
    process.kill(run.pid!, 'SIGINT')
    expect(await run.exited).to.equal(130)
    const {error} = JSON.parse(run.output().stdout) as {error: {code: string; message: string}}
    expect(error.code).to.equal('INTERRUPTED')
    expect(await s3.uploads(bucket)).to.deep.equal([])
    expect((await s3.keys(bucket)).filter((key) => key.endsWith('manifest.json'))).to.deep.equal([])
    rmSync(join(project.root, '..'), {force: true, recursive: true})
  })

  it('SIGINT while a staged pack goes up: exit 130 at once, nothing committed, nothing left staged', async () => {
    const {bucket, project} = await s3Project()
    // Every PutObject of a pack is read whole and never answered.
    const proxy = await FaultyProxy.start(s3.port, ({method, path}) =>
      method === 'PUT' && path.includes('/packs/') ? 'hang' : undefined,
    )
    try {
      const staging = join(project.root, 'staging')
      mkdirSync(staging)
      Object.assign(project.env, {
        DIVIO_BACKUP_MEDIA_FORMAT: 'packs',
        DIVIO_BACKUP_STORE: s3.dsn(bucket, 'divio', {endpoint: proxy.endpoint}),
        DIVIO_BACKUP_TMPDIR: staging,
      })
      const run = watch(cliAsync(project, ['create', '--media-only', '--json']))
      for (let waited = 0; proxy.injected.length === 0 && waited < 60_000; waited += 20) await sleep(20)
      expect(proxy.injected.length, 'no pack was ever sent').to.be.above(0)
      const interrupted = Date.now()
      process.kill(run.pid!, 'SIGINT')
      expect(await run.exited).to.equal(130)
      expect(Date.now() - interrupted, 'within seconds, cleanup included').to.be.below(8000)
      const {error} = JSON.parse(run.output().stdout) as {error: {code: string}}
      expect(error.code).to.equal('INTERRUPTED')
      expect((await s3.keys(bucket)).filter((key) => key.endsWith('manifest.json'))).to.deep.equal([])
      // The staged packs (and the backup's other staged files) went with the command's staging folder.
      expect(readdirSync(staging)).to.deep.equal([])
    } finally {
      await proxy.stop()
      rmSync(join(project.root, '..'), {force: true, recursive: true})
    }
  })

  it('a full staging folder while a pack is staged: exit 7 naming the temp folder, not S3; nothing committed, nothing left open', async function () {
    const {bucket, project} = await s3Project()
    // Room for the backup's small staged files, not for the pack of the video (11 MiB).
    const staging = mountTmpfs(this, join(project.root, '..', 'full-staging'), 'size=2m')
    try {
      Object.assign(project.env, {DIVIO_BACKUP_MEDIA_FORMAT: 'packs', DIVIO_BACKUP_TMPDIR: staging})
      for (const json of [false, true]) {
        const result = await cli(project, ['create', '--media-only', ...(json ? ['--json'] : [])])
        expect(result.status, result.stderr).to.equal(7)
        const message = json ? (result.json() as {error: {message: string}}).error.message : result.stderr
        expect(message).to.include(`temp folder ${staging}`)
        expect(message).to.include('the disk is full')
        // The test's folders have random names, which may hold "S3" themselves (so may the key notices).
        const words = message.replaceAll(join(project.root, '..'), '<test folder>')
        expect(words).to.not.match(/S3|s3:\/\/|Encrypting|BACKUP_FAILED/)
      }

      expect((await s3.keys(bucket)).filter((key) => key.endsWith('manifest.json'))).to.deep.equal([])
      expect(readdirSync(staging)).to.deep.equal([])
      // Nothing of the commands holds a file open there.
      const unmounted = spawnSync('umount', [staging], {encoding: 'utf8'})
      expect(unmounted.status, `umount: ${unmounted.stderr}`).to.equal(0)
    } finally {
      spawnSync('umount', [staging])
      rmSync(join(project.root, '..'), {force: true, recursive: true})
    }
  })

  // 256 MiB is fifty parts, and more than the line: a store that held what it sends would pass it.
  it('peak RSS stays under 150 MiB while 256 MiB of media streams to S3', async () => {
    const {bucket, project} = await s3Project()
    const path = join(project.root, 'media', 'large.bin')
    writeFileSync(path, '')
    truncateSync(path, 256 * MiB)
    const report = join(project.root, 'rss.txt')
    const created = await cliInBackground(project, ['create', '--media-only', '--json'], {
      NODE_OPTIONS: `--import=${join(repoRoot, 'test', 'fixtures', 'report-rss.mjs')}`,
      RSS_REPORT: report,
    })
    expect(created.status, created.stderr).to.equal(0)
    const peak = Number(readFileSync(report, 'utf8')) / 1024
    console.log(`      peak RSS: ${peak.toFixed(0)} MiB for 256 MiB of media to S3`)
    expect(peak).to.be.lessThan(150)
    const {id} = created.json() as Created
    const head = await s3
      .client()
      .send(new HeadObjectCommand({Bucket: bucket, Key: `divio/shop/local/${id}/media.tar.age`}))
    expect(head.ContentLength).to.be.greaterThan(256 * MiB)
    rmSync(join(project.root, '..'), {force: true, recursive: true})
  })

  // Both kinds of pack open at once (text compresses, random bytes do not), eight or more of each stored:
  // more than the line goes to S3, each pack staged in a file and sent from it.
  it('peak RSS stays under 150 MiB while a first packed backup of 256 MiB goes to S3', async () => {
    const {bucket, project} = await s3Project()
    const media = join(project.root, 'media', 'mixed')
    mkdirSync(media)
    for (let index = 0; index < 16; index++) {
      writeRandomFile(join(media, `photo-${index}.bin`), 8 * MiB)
      // Lines that differ, so that no two blobs are the same and each is stored.
      const lines = Array.from({length: 8 * 16_384}, (_, line) => `${index} ${line} ${'text '.repeat(10)}\n`)
      writeFileSync(join(media, `notes-${index}.txt`), lines.join('').slice(0, 8 * MiB))
    }

    const report = join(project.root, 'rss.txt')
    const created = await cliInBackground(project, ['create', '--media-only', '--json'], {
      DIVIO_BACKUP_MEDIA_FORMAT: 'packs',
      NODE_OPTIONS: `--import=${join(repoRoot, 'test', 'fixtures', 'report-rss.mjs')}`,
      RSS_REPORT: report,
    })
    expect(created.status, created.stderr).to.equal(0)
    const peak = Number(readFileSync(report, 'utf8')) / 1024
    console.log(`      peak RSS: ${peak.toFixed(0)} MiB for a first packed backup of 256 MiB to S3`)
    expect(peak).to.be.lessThan(150)
    const packs = (await s3.keys(bucket)).filter((key) => key.includes('/packs/'))
    expect(packs.length).to.be.at.least(16)
    rmSync(join(project.root, '..'), {force: true, recursive: true})
  })
})

/** The S3 operation a request is. */
function operationOf({method, query}: ProxiedRequest): string {
  if (method === 'POST' && query.has('uploads')) return 'create-upload'
  if (method === 'POST' && query.has('uploadId')) return 'complete-upload'
  if (method === 'PUT' && query.has('partNumber')) return 'part'
  if (method === 'PUT') return 'put'
  if (method === 'GET' && (query.has('list-type') || query.has('uploads'))) return 'list'
  if (method === 'GET') return 'get'
  return method.toLowerCase()
}

function faultName(fault: Exclude<Fault, undefined>): string {
  if (typeof fault !== 'object') return fault
  return 'code' in fault ? fault.code : 'answer'
}
