import {expect} from 'chai'

import {CLOCK_TOLERANCE_MS, clockProblem} from '../../src/domain/clock-check.js'

const NOW = new Date('2026-12-06T12:00:00.000Z')
const MINUTE = 60_000
const shifted = (ms: number) => new Date(NOW.getTime() + ms)
const backupAt = (ms: number) => ({createdAt: shifted(ms).toISOString(), id: '20261206T120000Z-abcdef'})

describe('whether the clock can be trusted (clockProblem)', () => {
  it('trusts a clock that nothing contradicts: no backups, and a store without a clock of its own', () => {
    expect(clockProblem({now: NOW})).to.equal(undefined)
    expect(clockProblem({now: NOW, store: {}})).to.equal(undefined)
  })

  it('a backup made up to the tolerance after now is a writer a little apart; past it, the clock is behind', () => {
    expect(clockProblem({newestBackup: backupAt(-400 * 24 * 60 * MINUTE), now: NOW})).to.equal(undefined)
    expect(clockProblem({newestBackup: backupAt(CLOCK_TOLERANCE_MS), now: NOW})).to.equal(undefined)
    const problem = clockProblem({newestBackup: backupAt(CLOCK_TOLERANCE_MS + MINUTE), now: NOW})
    expect(problem).to.equal(
      "this machine's clock reads 2026-12-06T12:00:00.000Z, but backup 20261206T120000Z-abcdef was made at 2026-12-06T12:16:00.000Z, 16m later",
    )
    expect(clockProblem({newestBackup: backupAt(400 * 24 * 60 * MINUTE), now: NOW})).to.contain('400d later')
  })

  it("what the store has just stamped says the clock is off either way, by the store's own clock", () => {
    const justStored = (ms: number) => ({at: shifted(ms), what: 'backup X'})
    expect(clockProblem({now: NOW, store: {justStored: justStored(-2 * MINUTE)}})).to.equal(undefined)
    expect(clockProblem({now: NOW, store: {justStored: justStored(-2 * 60 * MINUTE)}})).to.equal(
      "this machine's clock reads 2026-12-06T12:00:00.000Z, 2h ahead of the store's clock, which stamped backup X at 2026-12-06T10:00:00.000Z",
    )
    expect(clockProblem({now: NOW, store: {justStored: justStored(3 * 60 * MINUTE)}})).to.contain(
      "3h behind the store's clock",
    )
  })

  it("the time of the store's last answer says the clock is off either way", () => {
    expect(clockProblem({now: NOW, store: {now: shifted(5 * MINUTE)}})).to.equal(undefined)
    expect(clockProblem({now: NOW, store: {now: shifted(-90 * MINUTE)}})).to.equal(
      "this machine's clock reads 2026-12-06T12:00:00.000Z, 1h 30m ahead of the store's clock, which reads 2026-12-06T10:30:00.000Z",
    )
    expect(clockProblem({now: NOW, store: {now: shifted(90 * MINUTE)}})).to.contain("1h 30m behind the store's clock")
  })

  it("the store's newest stamp says only that the clock is behind: an old stamp is an environment left alone", () => {
    expect(clockProblem({now: NOW, store: {newest: shifted(-30 * 24 * 60 * MINUTE)}})).to.equal(undefined)
    expect(clockProblem({now: NOW, store: {newest: shifted(20 * MINUTE)}})).to.equal(
      "this machine's clock reads 2026-12-06T12:00:00.000Z, but the store stamped an object of this environment at 2026-12-06T12:20:00.000Z, 20m later",
    )
  })

  it('over a sweep of skews, each kind of evidence draws a problem exactly when it is past the tolerance', () => {
    for (let minutes = -3000; minutes <= 3000; minutes += 7) {
      const ms = minutes * MINUTE
      const past = Math.abs(ms) > CLOCK_TOLERANCE_MS
      expect(clockProblem({newestBackup: backupAt(ms), now: NOW}) !== undefined, `backup ${minutes}`).to.equal(
        ms > CLOCK_TOLERANCE_MS,
      )
      expect(
        clockProblem({now: NOW, store: {justStored: {at: shifted(ms), what: 'x'}}}) !== undefined,
        `just stored ${minutes}`,
      ).to.equal(past)
      expect(clockProblem({now: NOW, store: {newest: shifted(ms)}}) !== undefined, `newest ${minutes}`).to.equal(
        ms > CLOCK_TOLERANCE_MS,
      )
      expect(clockProblem({now: NOW, store: {now: shifted(ms)}}) !== undefined, `store now ${minutes}`).to.equal(past)
    }
  })
})
