import {expect} from 'chai'

import {colourFor, renderCalendar, renderSparkline} from '../../src/cli/calendar.js'
import {renderPrune} from '../../src/cli/render.js'
import {simulateDailySchedule} from '../../src/domain/retention-projection.js'
import {RetentionPolicies} from '../../src/domain/retention.js'
import {nextSlot} from '../../src/domain/schedule.js'
import {expectGolden} from '../helpers/golden.js'

const DEFAULTS: RetentionPolicies = {
  onDemand: {days: 30, keepOlder: 3},
  scheduled: {daily: 7, monthly: 12, weekly: 4, yearly: 0},
}

/** What a year and a half of nightly backups leaves under the default policy, as calendar marks. */
function simulatedYear() {
  const schedule = {at: '02:00', timezone: 'UTC'}
  const held = simulateDailySchedule({
    days: 540,
    nextSlotAfter: (instant) => nextSlot(schedule, instant),
    policies: DEFAULTS,
    start: new Date('2025-06-01T00:00:00Z'),
    timezone: 'UTC',
  })
  return held.map(({createdAt, tier}) => ({day: createdAt.slice(0, 10), mark: tier!}))
}

describe('the retention calendar (golden files; UPDATE_GOLDEN=1 rewrites them)', () => {
  it('shows a year of the default policy: a week of dailies, then weeklies, then monthlies', () => {
    const marks = simulatedYear()
    const lastDay = marks
      .map(({day}) => day)
      .sort()
      .at(-1)!
    const text = renderCalendar(marks, {colour: false, lastDay})
    expectGolden('render/calendar-default-policy', `${text}\n`)
    // Plain ASCII without colour, and within the width of every other output.
    expect(text).to.match(/^[\u0020-\u007E\n]*$/)
    for (const line of text.split('\n')) expect(line.length).to.be.at.most(100)
    const cells = text
      .split('\n')
      .slice(1, 8)
      .map((line) => line.slice(4))
      .join('')
    expect(cells.split('d').length - 1).to.equal(7)
    expect(cells.split('w').length - 1).to.be.within(1, 4)
    expect(cells.split('m').length - 1).to.be.within(10, 12)
  })

  it('in colour: each mark in its colour, and otherwise the same picture', () => {
    const marks = simulatedYear()
    const lastDay = marks
      .map(({day}) => day)
      .sort()
      .at(-1)!
    const coloured = renderCalendar(marks, {colour: true, lastDay})
    expectGolden('render/calendar-default-policy-colour', `${coloured}\n`)
    // eslint-disable-next-line no-control-regex -- the colour codes are what is being removed
    expect(coloured.replaceAll(/\u001B\[\d+m/g, '')).to.equal(renderCalendar(marks, {colour: false, lastDay}))
  })

  it('a day with several backups shows the one kept longest, a pin above all; removed ones show as x', () => {
    const text = renderCalendar(
      [
        {day: '2026-12-01', mark: 'removed'},
        {day: '2026-12-01', mark: 'daily'},
        {day: '2026-12-02', mark: 'monthly'},
        {day: '2026-12-02', mark: 'pinned'},
        {day: '2026-12-03', mark: 'removed'},
      ],
      {colour: false, lastDay: '2026-12-06'},
    )
    expect(text.split('\n')).to.deep.equal([
      'Weeks of 2026-11-30 to 2026-11-30:',
      'Mon .',
      'Tue d',
      'Wed p',
      'Thu x',
      'Fri .',
      'Sat .',
      'Sun .',
      'x removed  d daily  p pinned  . none',
    ])
  })

  it('prune draws its decisions when asked, and only the table when not', () => {
    const plan = {
      dryRun: true,
      keep: [{id: '20261202T020000Z-aaaaaa', reason: 'daily (day 2026-12-02)', tier: 'daily' as const}],
      remove: [{id: '20261101T020000Z-bbbbbb', reason: 'scheduled, no tier keeps it'}],
    }
    expect(renderPrune(plan, 'dry-run')).to.not.include('Weeks of')
    const drawn = renderPrune(plan, 'dry-run', {colour: false, lastDay: '2026-12-03'})
    expect(drawn).to.include('Weeks of 2026-10-26 to 2026-11-30:')
    expect(drawn).to.match(/^x removed {2}d daily {2}\. none$/m)
  })

  it('colours only a terminal, and never with NO_COLOR or TERM=dumb, unless --color or --no-color says', () => {
    expect(colourFor({isTTY: true}, {})).to.equal(true)
    expect(colourFor({isTTY: false}, {})).to.equal(false)
    expect(colourFor({}, {})).to.equal(false)
    expect(colourFor({isTTY: true}, {NO_COLOR: '1'})).to.equal(false)
    expect(colourFor({isTTY: true}, {TERM: 'dumb'})).to.equal(false)
    // --color and --no-color decide, whatever the stream and the variables.
    expect(colourFor({isTTY: false}, {NO_COLOR: '1'}, true)).to.equal(true)
    expect(colourFor({isTTY: true}, {}, false)).to.equal(false)
  })

  it('a sparkline scales sizes between their least and most, in blocks or in ASCII', () => {
    const sizes = [10, 12, 11, 40, 41, 5, 80]
    expect(renderSparkline(sizes, {unicode: true})).to.equal('▁▂▂▄▄▁█')
    expect(renderSparkline(sizes, {unicode: false})).to.equal('_..~~_#')
    expect(renderSparkline([7, 7, 7], {unicode: true})).to.equal('▁▁▁')
  })
})
