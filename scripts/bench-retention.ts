// Times applyRetention over 100,000 backups (target: under 200 ms), with the default policies,
// in a time zone with DST. Prints the median and the worst of several runs; asserts nothing.
import {performance} from 'node:perf_hooks'

import {applyRetention, RetentionCandidate} from '../src/domain/retention.js'

const COUNT = Number(process.env.BENCH_BACKUPS ?? 100_000)
const RUNS = 7
const start = Date.parse('2016-01-01T00:00:00Z')
const step = Math.floor((10 * 365 * 86_400_000) / COUNT)
const backups: RetentionCandidate[] = Array.from({length: COUNT}, (_, index) => ({
  createdAt: new Date(start + index * step + ((index * 7919) % 3_600_000)).toISOString(),
  id: `b${String(index).padStart(6, '0')}`,
  pinned: index % 10_007 === 0,
  trigger: index % 5 === 0 ? 'on-demand' : 'scheduled',
}))
const policies = {onDemand: {days: 30, keepOlder: 3}, scheduled: {daily: 7, monthly: 12, weekly: 4, yearly: 0}}
const now = new Date(start + COUNT * step + 86_400_000)

const times: number[] = []
let kept = 0
for (let run = 0; run < RUNS; run++) {
  const began = performance.now()
  kept = applyRetention(backups, policies, now, 'Europe/Zurich').keep.length
  times.push(performance.now() - began)
}

times.sort((a, b) => a - b)
console.log(`applyRetention over ${COUNT.toLocaleString('en')} backups (Europe/Zurich, default policies): kept ${kept}`)
console.log(
  `  median ${times[Math.floor(RUNS / 2)].toFixed(1)} ms, worst ${times.at(-1)!.toFixed(1)} ms over ${RUNS} runs (target: < 200 ms)`,
)
