import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {formatDuration, parseDuration} from '../../src/domain/duration.js'
import {parseExposition} from '../helpers/exposition.js'
import {cli, makeProject, writeEnvironments} from '../helpers/project.js'

interface Status {
  environments: Array<{
    app: string
    damaged?: number
    environment: string
    error?: {code: string}
    late?: boolean
    newest?: null | {ageSeconds: number; id: string}
    nextScheduledAt: null | string
  }>
  ok: boolean
}

const at = (instant: string) => ({DIVIO_BACKUP_NOW: instant})
const HOUR = 3_600_000

describe('status: is every environment fresh?', () => {
  it('--max-age exits 0 up to the boundary and 1 past it, under a clock override', async () => {
    const project = makeProject()
    const taken = '2026-12-01T02:00:00.000Z'
    const created = await cli(project, ['create', '--db-only'], at(taken))
    expect(created.status, created.stderr).to.equal(0)
    const later = (ms: number) => at(new Date(Date.parse(taken) + ms).toISOString())

    const onTheBoundary = await cli(project, ['status', '--max-age', '26h', '--json'], later(26 * HOUR))
    expect(onTheBoundary.status, onTheBoundary.stderr).to.equal(0)
    const fresh = onTheBoundary.json() as Status
    expect(fresh.ok).to.equal(true)
    expect(fresh.environments[0]).to.deep.include({app: 'shop', environment: 'local', late: false})
    expect(fresh.environments[0].newest?.ageSeconds).to.equal(26 * 3600)

    const pastIt = await cli(project, ['status', '--max-age', '26h'], later(26 * HOUR + 1000))
    expect(pastIt.status).to.equal(1)
    expect(pastIt.stdout).to.match(/^shop\/local +2026-12-01 02:00 UTC +1d 2h +never +0 +LATE +-$/m)
    expect(pastIt.stderr).to.equal(
      "Late: shop/local's newest complete backup is 1d 2h old, older than --max-age 26h.\n",
    )

    // Without --max-age it only reports, and exits 0 however old the backups are.
    expect((await cli(project, ['status'], later(400 * 24 * HOUR))).status).to.equal(0)
  })

  it('an environment with no backup is late; one whose store cannot be read is reported, never hidden', async () => {
    const project = makeProject()
    writeEnvironments(project, {
      live: {schedule: {at: '02:00', timezone: 'UTC'}, store: './.divio/backups'},
      test: {store: '/nonexistent/backups-disk'},
    })
    const now = at('2026-12-01T12:00:00Z')
    const status = await cli(project, ['status', '--json'], now)
    expect(status.status, 'an unreadable store is a failure').to.equal(7)
    const result = status.json() as Status
    expect(result.ok).to.equal(false)
    expect(result.environments.map(({environment}) => environment)).to.deep.equal(['live', 'test'])
    expect(result.environments[0]).to.deep.include({newest: null, nextScheduledAt: '2026-12-02T02:00:00.000Z'})
    expect(result.environments[1].error?.code).to.equal('STORE_NOT_FOUND')

    const late = await cli(project, ['status', '--max-age', '1d'], now)
    expect(late.status).to.equal(1)
    expect(late.stderr).to.include('Late: shop/live has no complete backup.')
    expect(late.stderr).to.match(/^Error: shop\/test: .*\/nonexistent\/backups-disk/m)

    // -e narrows it to one environment.
    const one = (await cli(project, ['status', '-e', 'live', '--json'], now)).json() as Status
    expect(one.environments.map(({environment}) => environment)).to.deep.equal(['live'])
    expect((await cli(project, ['status', '-e', 'nope'])).status).to.equal(2)
  })

  it('--format prometheus writes valid metrics, to a file atomically with --output', async () => {
    const project = makeProject()
    expect((await cli(project, ['create'], at('2026-12-01T02:00:00Z'))).status).to.equal(0)
    const printed = await cli(project, ['status', '--format', 'prometheus'], at('2026-12-01T03:00:00Z'))
    expect(printed.status, printed.stderr).to.equal(0)
    const samples = parseExposition(printed.stdout)
    const value = (name: string, component?: string) =>
      samples.find((sample) => sample.name === name && sample.labels.component === component)?.value
    expect(value('divio_backup_store_up')).to.equal(1)
    expect(value('divio_backup_last_success_timestamp_seconds', 'database')).to.equal(
      Date.parse('2026-12-01T02:00:00Z') / 1000,
    )
    expect(value('divio_backup_last_success_timestamp_seconds', 'media')).to.be.a('number')
    expect(value('divio_backup_last_size_bytes', 'database')).to.be.greaterThan(0)
    expect(value('divio_backup_damaged_backups')).to.equal(0)
    for (const sample of samples) expect(sample.labels).to.include({app: 'shop', env: 'local'})

    const promtool = spawnSync('promtool', ['check', 'metrics'], {encoding: 'utf8', input: printed.stdout})
    if (promtool.error === undefined) expect(promtool.status, promtool.stdout + promtool.stderr).to.equal(0)

    const file = join(project.root, 'divio-backup.prom')
    const written = await cli(project, ['status', '--format', 'prometheus', '-o', file], at('2026-12-01T03:00:00Z'))
    expect(written.status, written.stderr).to.equal(0)
    expect(written.stdout).to.equal('')
    expect(readFileSync(file, 'utf8')).to.equal(printed.stdout)
    expect(readdirSync(project.root).filter((name) => name.includes('.partial'))).to.deep.equal([])
  })

  it('durations are read as people write them, and a bad one is a usage error', async () => {
    expect(parseDuration('26h')).to.equal(26 * 3600)
    expect(parseDuration('1h30m')).to.equal(5400)
    expect(parseDuration('2d')).to.equal(172_800)
    expect(parseDuration('1w')).to.equal(604_800)
    for (const bad of ['', '26', 'h', '0h', '1.5h', '-1h', '26 h', '1y'])
      expect(parseDuration(bad), bad).to.equal(undefined)
    expect(formatDuration(93_784)).to.equal('1d 2h')
    expect(formatDuration(59)).to.equal('59s')
    expect(formatDuration(0)).to.equal('0s')
    const project = makeProject()
    const refused = await cli(project, ['status', '--max-age', '26'])
    expect(refused.status).to.equal(2)
    expect(refused.stderr).to.match(/^Error: --max-age "26" is not a duration\.\nTry this: /)
  })
})
