import {RetentionCandidate} from '../../src/domain/retention.js'

/**
 * A fixed, irregular history of about 300 backups from November 2023 to December 2025: gaps of days
 * and weeks, several backups on some days, backups on both sides of the DST changes of Europe/Zurich
 * and America/New_York and around local midnights, a leap day, on-demand and scheduled, a few pinned.
 * Deterministic (a seeded generator), so golden files stay valid.
 */
export function irregularHistory(): RetentionCandidate[] {
  let seed = 20_231_101
  const random = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
    return seed / 2_147_483_648
  }

  const instants: {pinned?: boolean; time: string; trigger: 'on-demand' | 'scheduled'}[] = []
  const gaps: [string, string][] = [
    ['2024-01-08', '2024-01-12'],
    ['2024-06-03', '2024-06-24'],
    ['2024-12-20', '2025-01-06'],
    ['2025-08-01', '2025-08-15'],
  ]
  for (let day = Date.parse('2023-11-01T00:00:00Z'); day < Date.parse('2026-01-01T00:00:00Z'); day += 86_400_000) {
    const date = new Date(day).toISOString().slice(0, 10)
    if (gaps.some(([from, to]) => date >= from && date <= to)) continue
    if (random() < 0.66) continue
    const count = random() < 0.85 ? 1 : 2 + Math.floor(random() * 2)
    for (let index = 0; index < count; index++) {
      const time = new Date(day + Math.floor(random() * 86_400) * 1000).toISOString()
      instants.push({pinned: random() < 0.01, time, trigger: random() < 0.7 ? 'scheduled' : 'on-demand'})
    }
  }

  const edges = [
    // Europe/Zurich: clocks go forward 2024-03-31 01:00Z and back 2024-10-27 01:00Z.
    '2024-03-31T00:30:00Z',
    '2024-03-31T01:30:00Z',
    '2024-10-27T00:30:00Z',
    '2024-10-27T01:30:00Z',
    // America/New_York: forward 2024-03-10 07:00Z, back 2024-11-03 06:00Z.
    '2024-03-10T06:30:00Z',
    '2024-03-10T07:30:00Z',
    '2024-11-03T05:30:00Z',
    '2024-11-03T06:30:00Z',
    // Around local midnights: the same instant falls on different days in each zone.
    '2025-03-02T22:30:00Z',
    '2025-03-03T04:30:00Z',
    '2025-06-30T23:30:00Z',
    // Leap day.
    '2024-02-29T00:10:00Z',
    '2024-02-29T23:50:00Z',
  ]
  for (const time of edges) instants.push({time, trigger: 'scheduled'})

  return instants
    .sort((a, b) => a.time.localeCompare(b.time))
    .map(({pinned, time, trigger}, index) => ({
      createdAt: time,
      id: `${time.replaceAll(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}-${String(index).padStart(3, '0')}`,
      pinned: pinned ?? false,
      trigger,
    }))
}
