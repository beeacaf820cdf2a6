import {expect} from 'chai'
import * as fc from 'fast-check'
import {DateTime, Settings} from 'luxon'

import {projectExpiry, simulateDailySchedule} from '../../src/domain/retention-projection.js'
import {
  applyRetention,
  isValidTimeZone,
  RetentionCandidate,
  RetentionPolicies,
  RetentionResult,
} from '../../src/domain/retention.js'
import {nextSlot} from '../../src/domain/schedule.js'
import {expectGolden} from '../helpers/golden.js'
import {irregularHistory} from './retention-history.js'

const DEFAULTS: RetentionPolicies = {
  onDemand: {days: 30, keepOlder: 3},
  scheduled: {daily: 7, monthly: 12, weekly: 4, yearly: 0},
}

function policy(
  onDemand: Partial<RetentionPolicies['onDemand']>,
  scheduled: Partial<RetentionPolicies['scheduled']>,
): RetentionPolicies {
  return {onDemand: {...DEFAULTS.onDemand, ...onDemand}, scheduled: {...DEFAULTS.scheduled, ...scheduled}}
}

const NOW = new Date('2026-01-01T00:00:00Z')

/** What `run` returns, and how many date formats it (or luxon for it) asked Intl to build. */
function countingDateFormats<T>(run: () => T): {asked: number; result: T} {
  const Original = Intl.DateTimeFormat
  let asked = 0
  const counting = function (this: unknown, ...args: ConstructorParameters<typeof Intl.DateTimeFormat>) {
    asked++
    return new Original(...args)
  }

  Object.assign(counting, Original)
  // luxon keeps what it asked Intl once (the system's locale, zones) for the whole process.
  Settings.resetCaches()
  ;(Intl as {DateTimeFormat: unknown}).DateTimeFormat = counting
  try {
    const result = run()
    return {asked, result}
  } finally {
    ;(Intl as {DateTimeFormat: unknown}).DateTimeFormat = Original
  }
}

const variants: {name: string; now?: Date; policies: RetentionPolicies; timezone: string}[] = [
  {name: 'defaults-utc', policies: DEFAULTS, timezone: 'UTC'},
  {name: 'defaults-zurich', policies: DEFAULTS, timezone: 'Europe/Zurich'},
  {name: 'defaults-new-york', policies: DEFAULTS, timezone: 'America/New_York'},
  {name: 'defaults-tokyo', policies: DEFAULTS, timezone: 'Asia/Tokyo'},
  {name: 'defaults-kathmandu', policies: DEFAULTS, timezone: 'Asia/Kathmandu'},
  {name: 'daily-only-zurich', policies: policy({}, {daily: 10, monthly: 0, weekly: 0}), timezone: 'Europe/Zurich'},
  {name: 'weekly-only-new-york', policies: policy({}, {daily: 0, monthly: 0, weekly: 8}), timezone: 'America/New_York'},
  {name: 'monthly-only-utc', policies: policy({}, {daily: 0, monthly: 24, weekly: 0}), timezone: 'UTC'},
  {
    name: 'yearly-zurich',
    policies: policy({}, {daily: 3, monthly: 6, weekly: 2, yearly: 5}),
    timezone: 'Europe/Zurich',
  },
  {name: 'large-counts-utc', policies: policy({}, {daily: 60, monthly: 36, weekly: 52}), timezone: 'UTC'},
  {
    name: 'one-each-zurich',
    policies: policy({days: 1, keepOlder: 1}, {daily: 1, monthly: 1, weekly: 1}),
    timezone: 'Europe/Zurich',
  },
  {
    name: 'daily-and-monthly-new-york',
    policies: policy({}, {daily: 14, monthly: 6, weekly: 0}),
    timezone: 'America/New_York',
  },
  {
    name: 'weekly-and-monthly-zurich',
    policies: policy({}, {daily: 0, monthly: 12, weekly: 6}),
    timezone: 'Europe/Zurich',
  },
  {name: 'on-demand-days-only', policies: policy({days: 90, keepOlder: 0}, {}), timezone: 'UTC'},
  {name: 'on-demand-keep-older-only', policies: policy({days: 0, keepOlder: 5}, {}), timezone: 'UTC'},
  {name: 'on-demand-long', policies: policy({days: 365, keepOlder: 10}, {}), timezone: 'UTC'},
  {
    name: 'now-mid-history-zurich',
    now: new Date('2024-11-03T12:00:00Z'),
    policies: DEFAULTS,
    timezone: 'Europe/Zurich',
  },
  {
    name: 'now-mid-history-new-york',
    now: new Date('2024-11-03T12:00:00Z'),
    policies: DEFAULTS,
    timezone: 'America/New_York',
  },
  {
    name: 'now-after-leap-day-utc',
    now: new Date('2024-03-01T00:00:00Z'),
    policies: policy({days: 7, keepOlder: 2}, {daily: 5, monthly: 3, weekly: 2}),
    timezone: 'UTC',
  },
  {name: 'now-after-gap-utc', now: new Date('2024-06-24T23:00:00Z'), policies: DEFAULTS, timezone: 'UTC'},
  {name: 'now-far-future-utc', now: new Date('2030-01-01T00:00:00Z'), policies: DEFAULTS, timezone: 'UTC'},
  {
    name: 'minimal-weekly-sydney',
    policies: policy({days: 0, keepOlder: 1}, {daily: 0, monthly: 0, weekly: 1}),
    timezone: 'Australia/Sydney',
  },
]

function render(result: RetentionResult): string {
  return [
    ...result.keep.map(({id, reason, tier}) => `keep    ${id}  ${tier ?? '-'}  ${reason}`),
    ...result.remove.map(({id, reason}) => `remove  ${id}  ${reason}`),
  ].join('\n')
}

// eslint-disable-next-line max-params -- mirrors applyRetention's own arguments
function checkInvariants(
  input: readonly RetentionCandidate[],
  result: RetentionResult,
  policies: RetentionPolicies,
  now: Date,
  timezone: string,
): void {
  const ids = [...result.keep, ...result.remove].map((decision) => decision.id)
  expect(new Set(ids).size, 'no duplicates').to.equal(ids.length)
  expect([...ids].sort(), 'keep + remove = input').to.deep.equal(input.map((backup) => backup.id).sort())
  if (input.length === 0) return
  const newest = [...input].sort(
    (a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt) || b.id.localeCompare(a.id),
  )[0]
  const kept = new Set(result.keep.map((decision) => decision.id))
  expect(kept.has(newest.id), 'the newest is kept').to.equal(true)
  for (const backup of input.filter((candidate) => candidate.pinned))
    expect(kept.has(backup.id), 'pinned are kept').to.equal(true)
  const again = applyRetention(
    input.filter((backup) => kept.has(backup.id)),
    policies,
    now,
    timezone,
  )
  expect(again.remove, 'fixpoint: the kept set keeps itself').to.deep.equal([])
  expect(again.keep.map((decision) => decision.id)).to.deep.equal(result.keep.map((decision) => decision.id))
}

describe('retention', () => {
  const history = irregularHistory()

  it('uses a history of about 300 backups with gaps, DST edges and a leap day', () => {
    expect(history.length).to.be.within(250, 350)
    expect(history.some((backup) => backup.createdAt.startsWith('2024-02-29'))).to.equal(true)
    expect(history.some((backup) => backup.pinned)).to.equal(true)
  })

  describe('golden tables (UPDATE_GOLDEN=1 rewrites them)', () => {
    for (const variant of variants) {
      it(variant.name, () => {
        const now = variant.now ?? NOW
        const input = history.filter((backup) => Date.parse(backup.createdAt) <= now.getTime())
        const result = applyRetention(input, variant.policies, now, variant.timezone)
        const header = `# ${JSON.stringify({now: now.toISOString(), policies: variant.policies, timezone: variant.timezone})}\n`
        expectGolden(`retention/${variant.name}`, `${header}${render(result)}\n`)
        checkInvariants(input, result, variant.policies, now, variant.timezone)
      })
    }

    it('has at least 20 policy variants', () => {
      expect(variants.length).to.be.at.least(20)
    })
  })

  it('labels reasons with the period in the schedule time zone', () => {
    // 23:30 UTC on 2025-06-30 is already 1 July in Zurich.
    const backups: RetentionCandidate[] = [
      {createdAt: '2025-06-30T23:30:00.000Z', id: 'b', pinned: false, trigger: 'scheduled'},
      {createdAt: '2025-06-30T12:00:00.000Z', id: 'a', pinned: false, trigger: 'scheduled'},
    ]
    const zurich = applyRetention(backups, policy({}, {daily: 1, monthly: 0, weekly: 0}), NOW, 'Europe/Zurich')
    expect(zurich.keep).to.deep.equal([{id: 'b', reason: 'daily (day 2025-07-01)', tier: 'daily'}])
    expect(zurich.remove).to.deep.equal([
      {id: 'a', reason: 'scheduled, kept by no tier: older than the most recent day with a backup'},
    ])
    const utc = applyRetention(backups, policy({}, {daily: 1, monthly: 0, weekly: 0}), NOW, 'UTC')
    expect(utc.keep).to.deep.equal([{id: 'b', reason: 'daily (day 2025-06-30)', tier: 'daily'}])
    expect(utc.remove).to.deep.equal([
      {id: 'a', reason: 'scheduled, kept by no tier: day 2025-06-30 keeps a newer one'},
    ])
  })

  it('explains on-demand decisions', () => {
    const day = (n: number) => new Date(NOW.getTime() - n * 86_400_000).toISOString()
    const backups: RetentionCandidate[] = [1, 31, 32, 33, 34, 35].map((age) => ({
      createdAt: day(age),
      id: `d${String(age).padStart(2, '0')}`,
      pinned: age === 35,
      trigger: 'on-demand',
    }))
    const result = applyRetention(backups, DEFAULTS, NOW, 'UTC')
    expect(result.keep).to.deep.equal([
      {id: 'd01', reason: 'on-demand, younger than 30 days', tier: 'on-demand'},
      {id: 'd31', reason: 'on-demand, older than 30 days and among the 3 newest of those', tier: 'on-demand'},
      {id: 'd32', reason: 'on-demand, older than 30 days and among the 3 newest of those', tier: 'on-demand'},
      {id: 'd33', reason: 'on-demand, older than 30 days and among the 3 newest of those', tier: 'on-demand'},
      {id: 'd35', reason: 'pinned', tier: 'on-demand'},
    ])
    expect(result.remove).to.deep.equal([
      {id: 'd34', reason: 'on-demand, older than 30 days and not among the 3 newest'},
    ])
  })

  it('refuses a policy that keeps nothing', () => {
    expect(() => applyRetention([], policy({days: 0, keepOlder: 0}, {}), NOW, 'UTC')).to.throw(/keeps nothing/)
    expect(() => applyRetention([], policy({}, {daily: 0, monthly: 0, weekly: 0, yearly: 0}), NOW, 'UTC')).to.throw(
      /keeps nothing/,
    )
  })

  it('never removes the newest complete backup, even when no tier keeps it', () => {
    const backups: RetentionCandidate[] = [
      {createdAt: '2025-12-31T10:00:00.000Z', id: 'newest', pinned: false, trigger: 'scheduled'},
      {createdAt: '2025-12-29T10:00:00.000Z', id: 'monday', pinned: false, trigger: 'scheduled'},
    ]
    const result = applyRetention(backups, policy({}, {daily: 0, monthly: 0, weekly: 1}), NOW, 'UTC')
    expect(result.keep).to.deep.equal([
      {id: 'newest', reason: 'the newest complete backup is always kept', tier: null},
      {id: 'monday', reason: 'weekly (ISO week 2026-W01)', tier: 'weekly'},
    ])
  })

  describe('properties (fast-check)', () => {
    const zones = ['UTC', 'Europe/Zurich', 'America/New_York', 'Asia/Kolkata', 'Pacific/Chatham']
    const start = Date.parse('2023-01-01T00:00:00Z')
    const span = 3 * 365 * 86_400_000
    const candidates = fc
      .uniqueArray(
        fc.record({offset: fc.integer({max: span, min: 0}), pinned: fc.boolean(), scheduled: fc.boolean()}),
        {maxLength: 80, selector: (backup) => backup.offset},
      )
      .map((rows) =>
        rows.map(({offset, pinned, scheduled}, index) => ({
          createdAt: new Date(start + offset).toISOString(),
          id: `b${String(index).padStart(3, '0')}`,
          pinned: pinned && index % 7 === 0,
          trigger: scheduled ? ('scheduled' as const) : ('on-demand' as const),
        })),
      )
    const policies = fc
      .record({
        daily: fc.nat(10),
        days: fc.nat(60),
        keepOlder: fc.nat(5),
        monthly: fc.nat(14),
        weekly: fc.nat(6),
        yearly: fc.nat(3),
      })
      .filter((p) => p.days + p.keepOlder > 0 && p.daily + p.weekly + p.monthly + p.yearly > 0)
      .map((p) => ({
        onDemand: {days: p.days, keepOlder: p.keepOlder},
        scheduled: {daily: p.daily, monthly: p.monthly, weekly: p.weekly, yearly: p.yearly},
      }))

    it('partitions the input, keeps the newest and the pinned, and is a fixpoint', () => {
      fc.assert(
        fc.property(
          candidates,
          policies,
          fc.constantFrom(...zones),
          fc.integer({max: 400, min: 0}),
          (backups, retention, zone, days) => {
            const now = new Date(start + span + days * 86_400_000)
            checkInvariants(backups, applyRetention(backups, retention, now, zone), retention, now, zone)
          },
        ),
        {numRuns: 300},
      )
    })
  })

  describe('a daily schedule at 02:00 Europe/Zurich over 3 years', () => {
    it('holds exactly 7 daily, 4 weekly and 12 monthly on every day after the first year', () => {
      const zone = 'Europe/Zurich'
      const schedule = {at: '02:00', timezone: zone}
      let held: RetentionCandidate[] = []
      let slot = new Date('2024-01-01T00:00:00Z')
      for (let day = 0; day < 3 * 365; day++) {
        slot = nextSlot(schedule, slot)
        held.push({
          createdAt: slot.toISOString(),
          id: `d${String(day).padStart(4, '0')}`,
          pinned: false,
          trigger: 'scheduled',
        })
        const {keep, remove} = applyRetention(held, DEFAULTS, slot, zone)
        const keptIds = new Set(keep.map((decision) => decision.id))
        held = held.filter((backup) => keptIds.has(backup.id))
        expect(keep.length + remove.length).to.be.greaterThan(0)
        if (day < 365) continue

        expect(keep, `day ${day}`).to.have.length(23)
        const local = (id: string) => DateTime.fromISO(held.find((backup) => backup.id === id)!.createdAt, {zone})
        const byTier = (tier: string) =>
          keep.filter((decision) => decision.tier === tier).map((decision) => local(decision.id))
        const daily = byTier('daily')
        expect(daily).to.have.length(7)
        // Seven consecutive calendar days, ending today.
        for (const [index, date] of daily.entries()) {
          expect(date.toISODate()).to.equal(DateTime.fromJSDate(slot, {zone}).minus({days: index}).toISODate())
        }

        const weekly = byTier('weekly')
        expect(weekly).to.have.length(4)
        expect(new Set(weekly.map((date) => `${date.weekYear}-${date.weekNumber}`)).size).to.equal(4)
        const monthly = byTier('monthly')
        expect(monthly).to.have.length(12)
        expect(new Set(monthly.map((date) => date.toFormat('yyyy-MM'))).size).to.equal(12)
      }
    })

    it('matches simulateDailySchedule, which `retention --simulate` prints', () => {
      const schedule = {at: '02:00', timezone: 'Europe/Zurich'}
      const kept = simulateDailySchedule({
        days: 500,
        nextSlotAfter: (instant) => nextSlot(schedule, instant),
        policies: DEFAULTS,
        start: new Date('2024-01-01T00:00:00Z'),
        timezone: 'Europe/Zurich',
      })
      expect(kept).to.have.length(23)
      expect(kept.filter((backup) => backup.tier === 'daily')).to.have.length(7)
    })
  })

  it('removes nothing during a 14-day pause of the schedule, until new backups arrive', () => {
    const zone = 'UTC'
    let held: RetentionCandidate[] = []
    const at = (day: number) => new Date(Date.parse('2025-01-01T02:00:00Z') + day * 86_400_000)
    for (let day = 0; day < 400; day++) {
      held.push({
        createdAt: at(day).toISOString(),
        id: `d${String(day).padStart(4, '0')}`,
        pinned: false,
        trigger: 'scheduled',
      })
      const keptIds = new Set(applyRetention(held, DEFAULTS, at(day), zone).keep.map((decision) => decision.id))
      held = held.filter((backup) => keptIds.has(backup.id))
    }

    const before = held.map((backup) => backup.id)
    for (let day = 400; day < 414; day++) {
      expect(applyRetention(held, DEFAULTS, at(day), zone).remove, `paused day ${day}`).to.deep.equal([])
    }

    held.push({createdAt: at(414).toISOString(), id: 'd0414', pinned: false, trigger: 'scheduled'})
    const after = applyRetention(held, DEFAULTS, at(414), zone)
    expect(after.remove.length).to.equal(1)
    expect(before).to.include(after.remove[0].id)
  })
})

describe('expiry projection', () => {
  const schedule = {at: '02:00', timezone: 'UTC'}
  const nextSlotAfter = (instant: Date) => nextSlot(schedule, instant)

  it('dates a scheduled backup by the slot whose backup pushes it out', () => {
    const policies = policy({}, {daily: 2, monthly: 0, weekly: 0})
    const backups: RetentionCandidate[] = [
      {createdAt: '2026-03-01T02:00:00.000Z', id: 'd0', pinned: false, trigger: 'scheduled'},
    ]
    const expiry = projectExpiry({
      backups,
      nextSlotAfter,
      now: new Date('2026-03-01T03:00:00Z'),
      policies,
      timezone: 'UTC',
    })
    // Kept by the backups of 2 and 3 March as one of the 2 most recent days, removed after the one of 3 March.
    expect(expiry.get('d0')).to.deep.equal({
      expiresAt: '2026-03-03T02:00:00.000Z',
      keptAtLeastUntil: '2026-03-03T02:00:00.000Z',
      note: 'removed after the scheduled backup of 2026-03-03 02:00 UTC',
    })
  })

  it('follows a backup through the weekly and monthly tiers', () => {
    const backups: RetentionCandidate[] = [
      {createdAt: '2026-03-02T02:00:00.000Z', id: 'monday', pinned: false, trigger: 'scheduled'},
    ]
    const expiry = projectExpiry({
      backups,
      nextSlotAfter,
      now: new Date('2026-03-02T03:00:00Z'),
      policies: DEFAULTS,
      timezone: 'UTC',
    })
    // 2 March 2026 is daily for a week, then the weekly of 2026-W10 for four weeks, then the monthly of
    // 2026-03 until 12 newer months hold a backup outside the daily and weekly tiers. March 2027 first
    // holds one on 9 March: 1 March 2027 is the weekly of 2027-W09, and 2 March leaves the daily tier then.
    expect(expiry.get('monday')?.expiresAt).to.equal('2027-03-09T02:00:00.000Z')
  })

  it('looks a year ahead in a time zone asking Intl for a formatter a few times, not once a day it replays', () => {
    const zoned = {at: '02:00', timezone: 'Europe/Zurich'}
    const backups: RetentionCandidate[] = Array.from({length: 40}, (_, day) => ({
      createdAt: new Date(Date.UTC(2026, 0, 1 + day * 7, 1)).toISOString(),
      id: `week-${day}`,
      pinned: false,
      trigger: 'scheduled',
    }))
    const {asked, result: expiry} = countingDateFormats(() =>
      projectExpiry({
        backups,
        nextSlotAfter: (instant) => nextSlot(zoned, instant),
        now: new Date('2026-10-08T12:00:00Z'),
        policies: DEFAULTS,
        timezone: zoned.timezone,
      }),
    )

    // The projection replays retention for each of up to a year of days to come: each asked Intl for
    // a formatter to check the zone: 369 in all.
    expect([...expiry.values()].some(({expiresAt}) => expiresAt !== null)).to.equal(true)
    expect(asked).to.be.lessThan(10)
  })

  it('describes what cannot be dated', () => {
    const backups: RetentionCandidate[] = [
      {createdAt: '2026-03-01T00:00:00.000Z', id: 'pinned', pinned: true, trigger: 'scheduled'},
      {createdAt: '2026-03-01T00:00:00.000Z', id: 'manual', pinned: false, trigger: 'on-demand'},
      {createdAt: '2026-02-28T00:00:00.000Z', id: 'scheduled', pinned: false, trigger: 'scheduled'},
    ]
    const expiry = projectExpiry({backups, now: new Date('2026-03-02T00:00:00Z'), policies: DEFAULTS, timezone: 'UTC'})
    expect(expiry.get('pinned')).to.deep.equal({expiresAt: null, keptAtLeastUntil: null, note: 'kept while pinned'})
    // An on-demand backup is surely kept to the end of its days; after that it depends on newer ones.
    expect(expiry.get('manual')?.keptAtLeastUntil).to.equal('2026-03-31T00:00:00.000Z')
    expect(expiry.get('manual')?.note).to.equal(
      'younger than 30 days until 2026-03-31 00:00 UTC; after that, kept while among the 3 newest older on-demand backups',
    )
    expect(expiry.get('scheduled')).to.deep.equal({
      expiresAt: null,
      keptAtLeastUntil: null,
      note: 'depends on future scheduled backups; configure a schedule to project it',
    })
  })
})

describe('retention without a schedule', () => {
  it('never asks Intl for a date format in UTC, whose time-zone data costs a thread 20-30 ms and MiB, and answers as in Etc/UTC', () => {
    // Without a schedule, every backup is on demand, and retention runs in UTC.
    const history = irregularHistory().map((backup) => ({...backup, trigger: 'on-demand' as const}))
    const {asked, result} = countingDateFormats(() => {
      expect(isValidTimeZone('UTC')).to.equal(true)
      return applyRetention(history, DEFAULTS, NOW, 'UTC')
    })

    expect(asked).to.equal(0)
    expect(result.keep.length).to.be.greaterThan(3)
    expect(result).to.deep.equal(applyRetention(history, DEFAULTS, NOW, 'Etc/UTC'))
    expect(isValidTimeZone('Nowhere/Atlantis')).to.equal(false)
  })
})
