import {DateTime} from 'luxon'

/**
 * A daily schedule at a wall-clock time in an IANA time zone. A *slot* is one scheduled instant; the
 * current slot is the most recent one at or before now. Local times that do not exist or exist twice
 * on the days clocks change are resolved by luxon, so each calendar day has exactly one slot.
 */
export interface Schedule {
  /** `HH:MM`, 24-hour. */
  at: string
  timezone: string
}

function slotOnDay(day: DateTime, at: string): DateTime {
  const [hour, minute] = at.split(':').map(Number)
  return day.set({hour, millisecond: 0, minute, second: 0})
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
