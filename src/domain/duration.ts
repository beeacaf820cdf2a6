/**
 * Durations as people write them on a command line: `26h`, `90m`, `2d`, `1h30m`, `3600s`, `1w`.
 * Pure, so that the boundary of `status --max-age` is tested without a clock.
 */

const UNIT_SECONDS: Record<string, number> = {d: 86_400, h: 3600, m: 60, s: 1, w: 604_800}
const DURATION = /^(?:\d+[wdhms])+$/

/** Seconds in `text`, or undefined when it is not a duration. */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim().toLowerCase()
  if (!DURATION.test(trimmed)) return undefined
  let seconds = 0
  for (const [, amount, unit] of trimmed.matchAll(/(\d+)([wdhms])/g)) seconds += Number(amount) * UNIT_SECONDS[unit]
  return seconds > 0 ? seconds : undefined
}

/** `1d 2h`, `26h`, `45m`, `12s`: the two largest units, for an age shown to a person. */
export function formatDuration(totalSeconds: number): string {
  const seconds = Math.max(0, Math.round(totalSeconds))
  const parts: string[] = []
  let rest = seconds
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const amount = Math.floor(rest / UNIT_SECONDS[unit])
    rest -= amount * UNIT_SECONDS[unit]
    if (amount > 0 || (unit === 's' && parts.length === 0)) parts.push(`${amount}${unit}`)
  }

  return parts.slice(0, 2).join(' ')
}
