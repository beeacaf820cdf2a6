#!/usr/bin/env node
// npm test's test run: every test/**/*.test.ts under this Node.js (mocha, the files in parallel), and
// at the same time the lanes of the other supported Node.js lines (scripts/test-lane.js), whose report
// follows the main one. Usage: run-tests.js [mocha options...].
//
// Most test files wait on child processes, servers and disks as much as they compute, so the lanes
// fill time the main run leaves idle instead of starting after it. The main run's files are handed to
// its workers longest first: a long file that started last would run alone at the end, on one core.
import {spawn} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {join, relative} from 'node:path'

/**
 * The longest files, longest first (seconds on a 2-core machine, in brackets). Only the order depends on
 * this list: a file missing from it runs after them, and a name here that no longer exists is ignored.
 */
const LONGEST_FIRST = [
  'test/cli/real-size-packs.test.ts', // [130]
  'test/cli/incremental.test.ts', // [95]
  'test/cli/host.test.ts', // [90]
  'test/cli/real-size-tar.test.ts', // [70]
  'test/cli/s3.integration.test.ts', // [60]
  'test/providers/postgres.integration.test.ts', // [50]
  'test/providers/s3-media.integration.test.ts', // [50]
  'test/cli/retention.test.ts', // [40]
  'test/cli/kill-sweep.test.ts', // [40]
  'test/cli/hostile-store.test.ts', // [35]
  'test/cli/end-to-end.test.ts', // [33]
  'test/services/transfer-faults.test.ts', // [30]
]

function testFiles(folder) {
  return readdirSync(folder, {withFileTypes: true}).flatMap((entry) => {
    const path = join(folder, entry.name)
    if (entry.isDirectory()) return testFiles(path)
    return entry.name.endsWith('.test.ts') ? [relative('.', path)] : []
  })
}

const all = testFiles('test').sort()
const files = [
  ...LONGEST_FIRST.filter((file) => all.includes(file)),
  ...all.filter((file) => !LONGEST_FIRST.includes(file)),
]

const lanes = spawn(process.execPath, ['scripts/test-lane.js', '22', '24'], {stdio: ['ignore', 'pipe', 'pipe']})
let laneOutput = ''
lanes.stdout.setEncoding('utf8').on('data', (text) => {
  laneOutput += text
})
lanes.stderr.setEncoding('utf8').on('data', (text) => {
  laneOutput += text
})
const lanesDone = new Promise((resolve) => {
  lanes.on('close', (status, signal) => resolve(status ?? signal))
})

const main = spawn(process.execPath, ['node_modules/mocha/bin/mocha.js', ...process.argv.slice(2), ...files], {
  stdio: 'inherit',
})
const mainStatus = await new Promise((resolve) => {
  main.on('close', (status, signal) => resolve(status ?? signal))
})
const laneStatus = await lanesDone
process.stdout.write(laneOutput)
if (mainStatus !== 0) console.error(`\nThe main test run failed (exit ${mainStatus}).`)
if (laneStatus !== 0) console.error(`\nA Node.js lane failed (exit ${laneStatus}).`)
process.exitCode = mainStatus === 0 && laneStatus === 0 ? 0 : 1
