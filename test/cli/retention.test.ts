import {expect} from 'chai'
import {mkdirSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {applyRetention, RetentionCandidate, RetentionPolicies} from '../../src/domain/retention.js'
import {cli, makeProject, Project, writeConfig} from '../helpers/project.js'

const POLICIES: RetentionPolicies = {
  onDemand: {days: 30, keepOlder: 3},
  scheduled: {daily: 3, monthly: 2, weekly: 2, yearly: 0},
}

function configure(project: Project): void {
  writeConfig(project, {
    database: 'sqlite:///db.sqlite3',
    media: 'media',
    retention: {onDemand: POLICIES.onDemand, scheduled: POLICIES.scheduled},
    schedule: {at: '02:00', timezone: 'Europe/Zurich'},
    store: './.divio/backups',
  })
}

const at = (now: string) => ({DIVIO_BACKUP_NOW: now})
const ids = async (project: Project, extra: string[] = []) =>
  ((await cli(project, ['list', '--json', ...extra])).json() as {id: string}[]).map((backup) => backup.id).sort()

describe('retention through the CLI', () => {
  it('create --scheduled at many instants, then prune, leaves exactly what applyRetention predicts', async () => {
    const project = makeProject()
    configure(project)
    let predicted: RetentionCandidate[] = []
    // Irregular instants over three months: gaps, two backups on some days, times on both sides of midnight in Zurich.
    const offsets = [
      0, 1, 1.4, 2, 5, 6, 9, 13, 14, 14.9, 20, 21, 27, 33, 34, 41, 48, 55, 56, 62, 70, 71, 77, 84, 85, 90,
    ]
    for (const offset of offsets) {
      const now = new Date(Date.parse('2026-01-01T01:30:00Z') + offset * 86_400_000).toISOString()
      const result = await cli(project, ['create', '--scheduled', '--media-only', '--json'], at(now))
      expect(result.status, result.stderr).to.equal(0)
      const created = result.json() as {
        createdAt: string
        id: string
        removedByRetention: {id: string}[]
        trigger: string
      }
      expect(created.trigger).to.equal('scheduled')
      expect(created.createdAt).to.equal(now)
      predicted.push({createdAt: now, id: created.id, pinned: false, trigger: 'scheduled'})
      const expected = applyRetention(predicted, POLICIES, new Date(now), 'Europe/Zurich')
      expect(created.removedByRetention.map((removal) => removal.id).sort()).to.deep.equal(
        expected.remove.map((removal) => removal.id).sort(),
      )
      const kept = new Set(expected.keep.map((decision) => decision.id))
      predicted = predicted.filter((backup) => kept.has(backup.id))
    }

    const last = new Date(Date.parse('2026-01-01T01:30:00Z') + 90 * 86_400_000).toISOString()
    const prune = await cli(project, ['prune', '--confirm', 'live', '--json'], at(last))
    expect(prune.status, prune.stderr).to.equal(0)
    expect((prune.json() as {remove: unknown[]}).remove).to.deep.equal([])
    expect(await ids(project)).to.deep.equal(predicted.map((backup) => backup.id).sort())
    expect(predicted.length).to.equal(3 + 2 + 2)

    // list names the tier that keeps each one, and the day it goes; info says why.
    const list = await cli(project, ['list'], at(last))
    expect(list.stdout).to.match(/^\S+ +daily +\S+ \S+ +2026-04-0\d\s*$/m)
    expect(list.stdout).to.match(/^\S+ +weekly +/m)
    expect(list.stdout).to.match(/^\S+ +monthly +/m)
    const daily = /^(\S+) +daily/m.exec(list.stdout)![1]
    expect((await cli(project, ['info', daily], at(last))).stdout).to.match(
      /^Retention {3}keep: daily \(day 2026-04-0\d\)$/m,
    )
  })

  it('schedule run takes one backup per slot, however often it runs', async () => {
    const project = makeProject()
    configure(project)
    // 02:00 in Zurich is 01:00 UTC in winter.
    const first = await cli(project, ['schedule', 'run', '--json'], at('2026-02-10T05:00:00Z'))
    expect(first.status, first.stderr).to.equal(0)
    expect((first.json() as {slot: string; taken: {id: string}}).slot).to.equal('2026-02-10T01:00:00.000Z')
    const again = await cli(project, ['schedule', 'run', '--json'], at('2026-02-10T23:59:00Z'))
    expect(again.json()).to.deep.include({existing: (first.json() as {taken: {id: string}}).taken.id, taken: null})
    expect((await cli(project, ['schedule', 'run'], at('2026-02-11T00:59:59Z'))).stdout).to.match(/^Nothing to take/)
    expect(await ids(project)).to.have.length(1)

    const next = await cli(project, ['schedule', 'run', '--json'], at('2026-02-11T01:00:00Z'))
    expect((next.json() as {taken: null | object}).taken).to.not.equal(null)
    expect(await ids(project)).to.have.length(2)

    const show = await cli(project, ['schedule', 'show'], at('2026-02-11T01:00:00Z'))
    expect(show.stdout).to.equal(
      'Daily at 02:00 (Europe/Zurich).\nNext run: 2026-02-12 02:00 GMT+1 = 2026-02-12 01:00 UTC.\n',
    )
  })

  it('a failed create removes nothing, and prune --dry-run removes nothing', async () => {
    const project = makeProject()
    configure(project)
    for (let day = 0; day < 6; day++) {
      const result = await cli(project, ['create', '--db-only', '--json'], at(`2026-01-0${day + 1}T12:00:00Z`))
      expect(result.status, result.stderr).to.equal(0)
    }

    const before = await ids(project)
    expect(before).to.have.length(6)
    rmSync(join(project.root, 'db.sqlite3'))
    const failed = await cli(project, ['create', '--db-only'], at('2026-03-15T12:00:00Z'))
    expect(failed.status).to.equal(7)
    expect(await ids(project)).to.deep.equal(before)

    const dryRun = await cli(project, ['prune', '--dry-run', '--json'], at('2026-03-15T12:00:00Z'))
    expect(dryRun.status).to.equal(0)
    const plan = dryRun.json() as {dryRun: boolean; keep: {id: string}[]; remove: {id: string; reason: string}[]}
    expect(plan.dryRun).to.equal(true)
    expect(plan.remove.map((removal) => removal.id)).to.deep.equal(before.slice(0, 3).reverse())
    expect(plan.remove[0].reason).to.equal('on-demand, older than 30 days and not among the 3 newest')
    expect(await ids(project)).to.deep.equal(before)

    const human = await cli(project, ['prune', '--dry-run'], at('2026-03-15T12:00:00Z'))
    expect(human.stdout).to.match(/\n3 kept, 3 would be removed \(dry run: nothing was changed\)\.\n\nWeeks of /)
    // The picture: the three kept ones as on-demand days, the three removed as x.
    expect(human.stdout).to.match(/^x removed {2}o on-demand {2}\. none\n$/m)

    // Without a terminal, a real prune needs --confirm naming the environment. The plan it shows first
    // is no dry run, and says so: it is what happens once confirmed.
    const refused = await cli(project, ['prune'], at('2026-03-15T12:00:00Z'))
    expect(refused.status).to.equal(6)
    expect(refused.stdout).to.match(/\n3 kept, 3 to remove once confirmed\.\n\nWeeks of /)
    expect(refused.stdout).to.not.match(/dry run|would/)
    expect(await ids(project)).to.deep.equal(before)

    // A pin keeps a backup that the policy would remove, and takes no slot.
    expect((await cli(project, ['pin', before[0]])).status).to.equal(0)
    const pruned = await cli(project, ['prune', '--confirm', 'live'], at('2026-03-15T12:00:00Z'))
    expect(pruned.status, pruned.stderr).to.equal(0)
    expect(pruned.stdout).to.match(new RegExp(`\\nRemoved 2 backups: ${before[2]}, ${before[1]}\\.\\n$`))
    expect(await ids(project)).to.deep.equal([before[0], ...before.slice(3)])
    // Nothing left to remove: a plain prune says so, and removes nothing.
    const again = await cli(project, ['prune', '--confirm', 'live'], at('2026-03-15T12:00:00Z'))
    expect(again.stdout).to.match(/\n4 kept, nothing to remove\.\n/)
    const pinned = (await cli(project, ['info', before[0], '--json'], at('2026-03-15T12:00:00Z'))).json() as {
      pinned: boolean
      retention: object
    }
    expect(pinned).to.deep.include({
      pinned: true,
      retention: {expiresAt: null, expiry: 'kept while pinned', keep: true, keptAtLeastUntil: null, reason: 'pinned'},
    })
  })

  it('prune collects incomplete backups older than the grace period, and never younger ones', async () => {
    const project = makeProject()
    configure(project)
    const folder = join(project.root, '.divio', 'backups', 'shop', 'live')
    for (const id of ['20260101T000000Z-aaaaaa', '20260301T000000Z-bbbbbb']) {
      mkdirSync(join(folder, id), {recursive: true})
      writeFileSync(join(folder, id, 'media.tar.age.partial-123456'), 'half')
    }

    // Both partial files were written just now; 23 hours later both are within the grace period.
    const soon = new Date(Date.now() + 23 * 3_600_000).toISOString()
    const early = await cli(project, ['prune', '--confirm', 'live', '--json'], at(soon))
    expect((early.json() as {remove: unknown[]}).remove).to.deep.equal([])
    expect(await ids(project, ['--all'])).to.have.length(2)

    const later = new Date(Date.now() + 25 * 3_600_000).toISOString()
    const collected = await cli(project, ['prune', '--confirm', 'live', '--json'], at(later))
    const removed = (collected.json() as {remove: {id: string; reason: string}[]}).remove
    expect(removed.map((removal) => removal.id)).to.deep.equal(['20260301T000000Z-bbbbbb', '20260101T000000Z-aaaaaa'])
    expect(removed[0].reason).to.match(/^incomplete, untouched for 25\.0 h \(grace period 24 h\)$/)
    expect(await ids(project, ['--all'])).to.deep.equal([])
  })

  it('with "afterBackup": false, create and the tick delete nothing (append-only credentials); prune applies the policy', async () => {
    const project = makeProject()
    writeConfig(project, {
      database: 'sqlite:///db.sqlite3',
      media: 'media',
      retention: {afterBackup: false, onDemand: {days: 1, keepOlder: 0}, scheduled: {daily: 1, monthly: 0, weekly: 0}},
      schedule: {at: '02:00'},
      store: './.divio/backups',
    })
    for (const day of ['01', '05', '09']) {
      const now = at(`2026-03-${day}T12:00:00Z`)
      const created = await cli(project, ['create', '--json'], now)
      expect(created.status, created.stderr).to.equal(0)
      expect((created.json() as {removedByRetention: unknown[]}).removedByRetention).to.deep.equal([])
      const tick = await cli(project, ['schedule', 'run', '--json'], now)
      expect(tick.status, tick.stderr).to.equal(0)
      expect((tick.json() as {removed: unknown[]}).removed).to.deep.equal([])
    }

    expect(await ids(project)).to.have.length(6)
    expect((await cli(project, ['retention'])).stdout).to.include('create and schedule run delete nothing')
    // The machine that may delete prunes: the newest of each kind stays.
    const pruned = await cli(project, ['prune', '--confirm', 'live', '--json'], at('2026-03-09T13:00:00Z'))
    expect(pruned.status, pruned.stderr).to.equal(0)
    expect(await ids(project)).to.have.length(2)
  })

  it('retention prints the policy, and --simulate what a daily schedule would hold', async () => {
    const project = makeProject()
    configure(project)
    const report = await cli(project, ['retention', '--simulate', '200', '--json'], at('2026-01-01T00:00:00Z'))
    expect(report.status, report.stderr).to.equal(0)
    const {policies, simulation} = report.json() as {
      policies: {timezone: string}
      simulation: {days: number; keep: {createdAt: string; tier: string}[]}
    }
    expect(policies.timezone).to.equal('Europe/Zurich')
    expect(simulation.days).to.equal(200)
    expect(simulation.keep.map((backup) => backup.tier)).to.deep.equal([
      'daily',
      'daily',
      'daily',
      'weekly',
      'weekly',
      'monthly',
      'monthly',
    ])
    expect(simulation.keep[0].createdAt).to.equal('2026-07-19T00:00:00.000Z')
    const words = await cli(project, ['retention'])
    expect(words.stdout).to.include(
      'On-demand backups: every one younger than 30 days, and the 3 newest of the older ones.',
    )
  })
})
