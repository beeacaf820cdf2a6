import {DateTime} from 'luxon'

/**
 * A daily schedule at a wall-clock time in an IANA time zone. A *slot* is one scheduled instant; the
 * current slot is the most recent one at or before now. Each calendar day has exactly one slot: a
 * local time that does not exist on a day the clocks go forward is moved forward by the gap, and one
 * that exists twice when they go back is taken at its later instant (luxon's choice for a date and
 * time, whatever the offset of the instant it is asked from).
 */
export interface Schedule {
  /** `HH:MM`, 24-hour. */
  at: string
  timezone: string
}

function slotOnDay(day: DateTime, at: string): DateTime {
  const [hour, minute] = at.split(':').map(Number)
  // From the date alone: day.set() kept day's own offset where it could, so that on the day clocks go
  // back an instant before the change and one after it named two slots, and a tick took two backups.
  return DateTime.fromObject({day: day.day, hour, minute, month: day.month, year: day.year}, {zone: day.zone})
}

export function currentSlot(schedule: Schedule, now: Date): Date {
  const local = DateTime.fromJSDate(now, {zone: schedule.timezone})
  const today = slotOnDay(local, schedule.at)
  return (today.toMillis() <= now.getTime() ? today : slotOnDay(local.minus({days: 1}), schedule.at)).toJSDate()
}

export function nextSlot(schedule: Schedule, now: Date): Date {
  const local = DateTime.fromJSDate(now, {zone: schedule.timezone})
  const today = slotOnDay(local, schedule.at)
  return (today.toMillis() > now.getTime() ? today : slotOnDay(local.plus({days: 1}), schedule.at)).toJSDate()
}

/** The instant in the schedule's zone, as `2026-11-29 02:00 CET`. */
export function formatInZone(instant: Date, timezone: string): string {
  return DateTime.fromJSDate(instant, {zone: timezone}).toFormat('yyyy-MM-dd HH:mm ZZZZ')
}
