import {expect} from 'chai'

import {cli, makeProject, Project, writeEnvironments} from '../helpers/project.js'

const at = (instant: string) => ({DIVIO_BACKUP_NOW: instant})
/** A month behind the newest backup: a dead RTC battery, or a VM resumed from an old snapshot. */
const BEHIND = '2026-11-01T03:00:00Z'

interface Failure {
  error: {code: string; exitCode: number; message: string; suggestion: string}
}

describe('a clock that cannot be trusted decides nothing', () => {
  let project: Project
  let newest: string

  const ids = async () => {
    const listed = await cli(project, ['list', '--json'], at('2026-12-02T00:00:00Z'))
    expect(listed.status, listed.stderr).to.equal(0)
    return (listed.json() as {id: string}[]).map(({id}) => id).sort()
  }

  before(async () => {
    project = makeProject()
    writeEnvironments(project, {local: {schedule: {at: '02:00', timezone: 'UTC'}}})
    // Four on-demand backups in September, old enough for retention to remove one on a clock of
    // November (older than 30 days, and not among the 3 newest of those), then a scheduled one in December.
    for (const minute of ['10', '11', '12', '13']) {
      const created = await cli(project, ['create', '--media-only'], at(`2026-09-01T10:${minute}:00Z`))
      expect(created.status, created.stderr).to.equal(0)
    }

    const ticked = await cli(project, ['schedule', 'run', '--json'], at('2026-12-01T03:00:00Z'))
    expect(ticked.status, ticked.stderr).to.equal(0)
    newest = (ticked.json() as {taken: {id: string}}).taken.id
  })

  it('create on a clock behind the newest backup keeps its backup, removes nothing, and exits 1 saying why', async () => {
    const before = await ids()
    const created = await cli(project, ['create', '--media-only', '--json'], at(BEHIND))
    expect(created.status).to.equal(1)
    const {error} = created.json() as Failure
    expect(error.code).to.equal('CLOCK_UNTRUSTED')
    expect(error.message).to.match(/^Backup 20261101T030000Z-\S+ is complete, but retention was not applied: /)
    expect(error.message).to.contain(
      `this machine's clock reads 2026-11-01T03:00:00.000Z, but backup ${newest} was made at`,
    )
    expect(error.suggestion).to.contain('timedatectl')
    const after = await ids()
    expect(after, 'every backup there before is still there').to.include.members(before)
    expect(after).to.have.length(before.length + 1)
  })

  it('prune on that clock removes nothing, and its dry run plans nothing', async () => {
    const before = await ids()
    for (const args of [
      ['prune', '--confirm', 'local', '--json'],
      ['prune', '--dry-run', '--json'],
    ]) {
      const pruned = await cli(project, args, at(BEHIND))
      expect(pruned.status, args.join(' ')).to.equal(1)
      const {error} = pruned.json() as Failure
      expect(error.code).to.equal('CLOCK_UNTRUSTED')
      expect(error.message).to.match(
        /^Prune (removed nothing|cannot say what retention would remove): this machine's clock/,
      )
    }

    expect(await ids()).to.deep.equal(before)
  })

  it('schedule run on that clock takes a backup anyway, though every slot seems to hold one, and exits 1', async () => {
    const before = await ids()
    const ticked = await cli(project, ['schedule', 'run', '--json'], at(BEHIND))
    expect(ticked.status).to.equal(1)
    const {error} = ticked.json() as Failure
    expect(error.code).to.equal('CLOCK_UNTRUSTED')
    const taken = /^Took backup (\S+), but applied neither the schedule's slot nor retention: /.exec(error.message)
    expect(taken, error.message).to.not.equal(null)
    const after = await ids()
    expect(after).to.include.members(before)
    expect(after.filter((id) => !before.includes(id))).to.deep.equal([taken![1]])
  })

  it('status on that clock is late under --max-age, and warns without it, instead of calling the backups fresh', async () => {
    const late = await cli(project, ['status', '--max-age', '26h'], at(BEHIND))
    expect(late.status).to.equal(1)
    expect(late.stderr).to.contain("Late: shop/local's freshness cannot be judged: this machine's clock reads")
    const json = await cli(project, ['status', '--max-age', '26h', '--json'], at(BEHIND))
    const [row] = (json.json() as {environments: {clock?: string; late?: boolean}[]}).environments
    expect(row.late).to.equal(true)
    expect(row.clock).to.contain(`but backup ${newest} was made at`)
    const plain = await cli(project, ['status'], at(BEHIND))
    expect(plain.status).to.equal(0)
    expect(plain.stderr).to.contain("Warning: shop/local's freshness cannot be judged")
  })

  it('on a clock that agrees with the store, prune works as before', async () => {
    const planned = await cli(project, ['prune', '--dry-run', '--json'], at('2026-12-02T03:00:00Z'))
    expect(planned.status, planned.stderr).to.equal(0)
    const {remove} = planned.json() as {remove: {id: string; reason: string}[]}
    expect(remove.map(({reason}) => reason)).to.include('on-demand, older than 30 days and not among the 3 newest')
  })
})
