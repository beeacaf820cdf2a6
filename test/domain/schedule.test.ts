import {expect} from 'chai'
import {DateTime} from 'luxon'

import {currentSlot, nextSlot, Schedule} from '../../src/domain/schedule.js'

const MINUTE = 60_000
const HOUR = 60 * MINUTE

/**
 * Zones whose clocks change in every way a schedule meets: at 02:00 or 03:00 local (Zurich, New York),
 * by half an hour (Lord Howe), at midnight, so that 00:00 does not exist on one day (Santiago), and
 * never (Kathmandu, UTC).
 */
const ZONES = ['Europe/Zurich', 'America/New_York', 'Australia/Lord_Howe', 'America/Santiago', 'Asia/Kathmandu', 'UTC']
/** Times that fall into the hours the clocks skip or repeat, in one zone or another. */
const TIMES = ['00:00', '01:30', '02:00', '02:30', '03:00', '23:30']

/**
 * The instants in 2026 where `zone`'s offset changes (found hour by hour, once a zone: each hour asks
 * Intl for the offset), or noon on 1 July if none.
 */
function transitions(zone: string): number[] {
  const known = transitionsOf.get(zone)
  if (known) return known
  const found: number[] = []
  const start = Date.parse('2026-01-01T00:00:00Z')
  let {offset} = DateTime.fromMillis(start, {zone})
  for (let instant = start; instant < Date.parse('2027-01-01T00:00:00Z'); instant += HOUR) {
    const next = DateTime.fromMillis(instant, {zone}).offset
    if (next !== offset) found.push(instant)
    offset = next
  }

  const answer = found.length > 0 ? found : [Date.parse('2026-07-01T12:00:00Z')]
  transitionsOf.set(zone, answer)
  return answer
}

const transitionsOf = new Map<string, number[]>()

const localDay = (instant: number, zone: string) => DateTime.fromMillis(instant, {zone}).toISODate()

/**
 * Hourly ticks at `minute` past each UTC hour, from two days before `around` to two days after: the
 * backups that `schedule run` takes (one where no scheduled backup is at or after the current slot).
 */
function backupsTaken(schedule: Schedule, around: number, minute: number): number[] {
  const taken: number[] = []
  const first = Math.floor((around - 2 * 24 * HOUR) / HOUR) * HOUR + minute * MINUTE
  for (let now = first; now < around + 2 * 24 * HOUR; now += HOUR) {
    const slot = currentSlot(schedule, new Date(now)).getTime()
    if (!taken.some((backup) => backup >= slot)) taken.push(now)
  }

  return taken
}

describe('schedule slots', () => {
  it('one slot a local day, however the clocks change: ticks take one backup a day, never two, and skip none (property)', () => {
    for (const zone of ZONES) {
      for (const at of TIMES) {
        const schedule = {at, timezone: zone}
        for (const around of transitions(zone)) {
          for (let minute = 0; minute < 60; minute += 15) {
            const taken = backupsTaken(schedule, around, minute)
            const days = taken.map((backup) => localDay(currentSlot(schedule, new Date(backup)).getTime(), zone))
            const where = `${zone} at ${at}, ticks at :${minute} around ${new Date(around).toISOString()}`
            expect(new Set(days).size, `${where}: two backups for one day (${days.join(' ')})`).to.equal(days.length)
            // Four days of ticks, less the part of a day before the first slot: never fewer than three.
            expect(days.length, `${where}: a day without a backup (${days.join(' ')})`).to.be.at.least(3)
          }
        }
      }
    }
  })

  it('the current slot is at or before now, the next one after it, and nothing lies between them', () => {
    for (const zone of ZONES) {
      const schedule = {at: '02:30', timezone: zone}
      for (const around of transitions(zone)) {
        for (let now = around - 36 * HOUR; now < around + 36 * HOUR; now += 7 * MINUTE) {
          const current = currentSlot(schedule, new Date(now)).getTime()
          const next = nextSlot(schedule, new Date(now)).getTime()
          expect(current, zone).to.be.at.most(now)
          expect(next, zone).to.be.greaterThan(now)
          expect(nextSlot(schedule, new Date(current)).getTime(), `${zone} ${new Date(now).toISOString()}`).to.equal(
            next,
          )
        }
      }
    }
  })
})
