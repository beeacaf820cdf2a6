/**
 * A calendar strip of backups: one row a weekday, one column a week (the oldest on the left), one
 * character a day, so that what retention keeps (a backup a day, then one a week, then one a month)
 * reads at a glance. Plain ASCII; colour only where the caller says the terminal takes it.
 */

export type CalendarMark = 'daily' | 'monthly' | 'on-demand' | 'pinned' | 'removed' | 'weekly' | 'yearly'

/** Which mark a day shows when it holds several backups: what is kept longest, a pin above all. */
const PRECEDENCE: readonly CalendarMark[] = ['removed', 'on-demand', 'daily', 'weekly', 'monthly', 'yearly', 'pinned']

const SYMBOLS: Record<CalendarMark, string> = {
  daily: 'd',
  monthly: 'm',
  'on-demand': 'o',
  pinned: 'p',
  removed: 'x',
  weekly: 'w',
  yearly: 'y',
}

/** ANSI colours: the kept tiers from green to blue as they last longer, removed in red. */
const COLOURS: Record<CalendarMark, number> = {
  daily: 32,
  monthly: 34,
  'on-demand': 33,
  pinned: 35,
  removed: 31,
  weekly: 36,
  yearly: 94,
}

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun']
const DAY_MS = 86_400_000
/** At most a year of weeks: 4 + 53 columns. */
const MAX_WEEKS = 53

export interface CalendarOptions {
  colour: boolean
  /** A day to single out (`YYYY-MM-DD`): the backup that `info` shows, drawn as `*` in reverse video. */
  highlight?: string
  /** The last day shown (`YYYY-MM-DD`, UTC): today, or the end of a simulation. */
  lastDay: string
}

/** The strip for `marks` (days as `YYYY-MM-DD`), from the week of the oldest one, at most a year back. */
export function renderCalendar(
  marks: ReadonlyArray<{day: string; mark: CalendarMark}>,
  options: CalendarOptions,
): string {
  const byDay = new Map<string, CalendarMark>()
  for (const {day, mark} of marks) {
    const shown = byDay.get(day)
    if (shown === undefined || PRECEDENCE.indexOf(mark) > PRECEDENCE.indexOf(shown)) byDay.set(day, mark)
  }

  const last = Date.parse(`${options.lastDay}T00:00:00Z`)
  const lastMonday = last - weekday(last) * DAY_MS
  const oldest = Math.min(last, ...[...byDay.keys()].map((day) => Date.parse(`${day}T00:00:00Z`)))
  const weeks = Math.min(MAX_WEEKS, Math.floor((lastMonday - (oldest - weekday(oldest) * DAY_MS)) / (7 * DAY_MS)) + 1)
  const firstMonday = lastMonday - (weeks - 1) * 7 * DAY_MS
  const paint = (mark: CalendarMark) =>
    options.colour ? `\u001B[${COLOURS[mark]}m${SYMBOLS[mark]}\u001B[0m` : SYMBOLS[mark]

  const highlighted = options.colour ? '\u001B[7m*\u001B[0m' : '*'
  const rows = WEEKDAYS.map((name, row) => {
    let cells = ''
    for (let week = 0; week < weeks; week++) {
      const day = firstMonday + (week * 7 + row) * DAY_MS
      const mark = byDay.get(isoDay(day))
      cells +=
        day > last ? ' ' : isoDay(day) === options.highlight ? highlighted : mark === undefined ? '.' : paint(mark)
    }

    return `${name} ${cells}`.trimEnd()
  })
  const present = PRECEDENCE.filter((mark) => [...byDay.values()].includes(mark))
  const legend = [
    ...(options.highlight === undefined ? [] : [`${highlighted} this backup`]),
    ...present.map((mark) => `${paint(mark)} ${mark}`),
    '. none',
  ].join('  ')
  return [`Weeks of ${isoDay(firstMonday)} to ${isoDay(lastMonday)}:`, ...rows, legend].join('\n')
}

/** Monday 0 … Sunday 6. */
function weekday(instant: number): number {
  return (new Date(instant).getUTCDay() + 6) % 7
}

function isoDay(instant: number): string {
  return new Date(instant).toISOString().slice(0, 10)
}

/**
 * Whether output to `stream` is coloured: as `--color`/`--no-color` say, else on a terminal without
 * NO_COLOR (https://no-color.org) or TERM=dumb.
 */
export function colourFor(stream: {isTTY?: boolean}, variables: NodeJS.ProcessEnv, requested?: boolean): boolean {
  if (requested !== undefined) return requested
  return stream.isTTY === true && !variables.NO_COLOR && variables.TERM !== 'dumb'
}

const BLOCKS = '▁▂▃▄▅▆▇█'
const ASCII_LEVELS = '_.-~=+*#'

/**
 * A sparkline of `values` (oldest first), one character each, scaled between their least and their
 * most: growth and sudden drops stand out. Block characters on a terminal that takes them, ASCII
 * otherwise.
 */
export function renderSparkline(values: readonly number[], options: {unicode: boolean}): string {
  const levels = options.unicode ? BLOCKS : ASCII_LEVELS
  const low = Math.min(...values)
  const high = Math.max(...values)
  return values
    .map((value) =>
      high === low ? levels[0] : levels[Math.round(((value - low) / (high - low)) * (levels.length - 1))],
    )
    .join('')
}
