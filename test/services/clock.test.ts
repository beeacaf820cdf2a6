import {expect} from 'chai'

import {parseS3Location} from '../../src/config/s3-location.js'
import {BackupError} from '../../src/errors.js'
import {catalogOf} from '../../src/services/catalog.js'
import {BackupContext} from '../../src/services/context.js'
import {takeBackup} from '../../src/services/create.js'
import {readPrunePlan} from '../../src/services/retention.js'
import {LocalStore} from '../../src/store/local.js'
import {Store} from '../../src/store/port.js'
import {S3Store} from '../../src/store/s3.js'
import {contextFor} from '../helpers/context.js'
import {cli, makeProject, Project, writerKeyFile} from '../helpers/project.js'
import {TestS3} from '../helpers/s3.js'

const HOURS = 3_600_000

/** What a refusal threw, or undefined when `work` succeeded. */
async function refusal(work: Promise<unknown>): Promise<BackupError | undefined> {
  try {
    await work
    return undefined
  } catch (error) {
    if (error instanceof BackupError && error.code === 'CLOCK_UNTRUSTED') return error
    throw error
  }
}

describe("this machine's clock against the store's own (S3's LastModified, s3rver)", () => {
  let s3: TestS3
  let project: Project
  let variables: NodeJS.ProcessEnv
  let buckets = 0

  before(async () => {
    s3 = await TestS3.start()
    project = makeProject()
    // Makes the owner's identity and this machine's writer key.
    expect((await cli(project, ['create', '--media-only'])).status).to.equal(0)
    variables = {
      ...project.env,
      DIVIO_BACKUP_IDENTITY_FILE: project.identityFile,
      DIVIO_BACKUP_WRITER_KEY_FILE: writerKeyFile(project),
    }
  })

  after(async () => {
    await s3.stop()
  })

  const newBucket = async (): Promise<Store> => {
    const bucket = `clock-${++buckets}`
    await s3.createBucket(bucket)
    return new S3Store(parseS3Location(new URL(s3.dsn(bucket, 'backups/')), 'store'), `s3://${bucket}/backups/`)
  }

  /** A context whose clock is off by `skewMs`, as the system clock (systemClock) or a simulation's. */
  const skewed = async (store: Store, skewMs: number, systemClock = true): Promise<BackupContext> => ({
    ...(await contextFor(project, variables, store)),
    now: () => new Date(Date.now() + skewMs),
    systemClock,
  })
  const create = (context: BackupContext) => takeBackup(context, {database: false, media: true, trigger: 'on-demand'})

  it('a clock hours ahead is caught by the time the store gave the backup just made: it stays, and nothing is removed', async () => {
    const store = await newBucket()
    const right = await create(await skewed(store, 0))
    const error = await refusal(create(await skewed(store, 3 * HOURS)))
    expect(error?.message).to.match(/^Backup \S+ is complete, but retention was not applied: /)
    // S3 stamps to the second, and the backup takes a moment: about 3 hours.
    expect(error?.message).to.match(/ (2h 59m|3h( \d+s)?) ahead of the store's clock, which stamped backup /)
    const kept = (await catalogOf(await skewed(store, 0))).complete.map(({manifest}) => manifest.id)
    expect(kept).to.include(right.id)
    expect(kept).to.have.length(2)
  })

  it("a clock hours behind is caught by the same stamp, and prune, which stores nothing, by the store's last answer", async () => {
    const store = await newBucket()
    // Every backup made on the clock behind: its own history agrees with it, the store does not.
    const behind = await skewed(store, -3 * HOURS)
    const error = await refusal(create(behind))
    expect(error?.message).to.match(/ (2h 59m|3h( \d+s)?) behind the store's clock/)
    const pruned = await refusal(readPrunePlan(await skewed(store, -3 * HOURS)))
    expect(pruned?.message).to.match(
      /^Prune removed nothing: .* (2h 59m|3h( \d+s)?) behind the store's clock, which reads /,
    )
  })

  it("prune, which stores nothing, catches a clock ahead by the time of the store's last answer (its Date header)", async () => {
    const store = await newBucket()
    await create(await skewed(store, 0))
    const error = await refusal(readPrunePlan(await skewed(store, 3 * HOURS)))
    expect(error?.message).to.match(
      /^Prune removed nothing: .* (2h 59m|3h( \d+s)?) ahead of the store's clock, which reads /,
    )
  })

  it("a simulated clock (DIVIO_BACKUP_NOW), and a store whose times are this machine's, are not compared", async () => {
    expect(await refusal(create(await skewed(await newBucket(), 3 * HOURS, false)))).to.equal(undefined)
    const behind = await skewed(await newBucket(), -3 * HOURS, false)
    await create(behind)
    expect(await refusal(readPrunePlan(behind))).to.equal(undefined)
    // A folder's times come from this machine's kernel: a clock ahead of it leaves no trace.
    const folder = new LocalStore(project.store)
    expect(await refusal(create(await skewed(folder, 3 * HOURS)))).to.equal(undefined)
  })
})
