#!/usr/bin/env node
// npm test after the build: every test/**/*.test.ts under this Node.js (mocha, the files in parallel),
// and at the same time the type check of the tests, the linters, and the lanes of the other supported
// Node.js lines (scripts/test-lane.js), whose reports follow the main one. Any of them failing fails
// the run. Usage: run-tests.js [mocha options...].
//
// Most test files wait on child processes, servers and disks as much as they compute, and the checks
// and the lanes fill that time instead of each waiting for the one before. The main run's files are
// handed to its workers longest first: a long file that started last would run alone at the end.
import {spawn} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {join, relative} from 'node:path'

/**
 * The longest files, longest first (seconds from a file's first test to its last in a run of the whole
 * suite, under its load, in brackets). Only the order depends on this list: a file missing from it
 * runs after them, and a name here that no longer exists is ignored. Files that mostly wait (stall
 * timeouts, grace periods, processes they stop: marked "waits") are spread among the busy ones, each
 * beside files that use the CPU: three that started together left the cores a third idle for 40 s, and
 * one left for last (the S3 store's stall test) ran alone at the end.
 */
const LONGEST_FIRST = [
  'test/cli/real-size-packs.test.ts', // [280]
  'test/providers/postgres.integration.test.ts', // [229]
  'test/cli/incremental.test.ts', // [206]
  'test/cli/s3.integration.test.ts', // [159]
  'test/cli/real-size-tar.test.ts', // [75]
  'test/services/transfer-faults.test.ts', // [58] waits
  'test/cli/host.test.ts', // [73]
  'test/cli/read-interrupt.test.ts', // [60] waits
  'test/providers/mysql.integration.test.ts', // [61]
  'test/cli/hung-store.test.ts', // [51] waits
  'test/cli/kill-sweep.test.ts', // [40]
  'test/cli/failures.test.ts', // [37] waits
  'test/cli/store-read-errors.test.ts', // [45]
  'test/providers/folder-restore-swap.test.ts', // [38]
  'test/store/s3.integration.test.ts', // [19] waits
  'test/cli/memory.test.ts', // [35]
  'test/providers/s3-media.integration.test.ts', // [27]
  'test/cli/hung-mount.test.ts', // [24] waits
  'test/providers/sqlite-engine.test.ts', // [27]
  'test/cli/widths.test.ts', // [26]
  'test/cli/corruption-sweep-packs.test.ts', // [24]
  'test/cli/hostile-store.test.ts', // [22]
  'test/domain/pack-collection.test.ts', // [21]
  'test/archive/extract.test.ts', // [20]
  'test/cli/terminal.test.ts', // [19]
  'test/cli/sqlite-swap.test.ts', // [18]
  'test/lib/byte-names.test.ts', // [17]
  'test/lib/zstd-stored.test.ts', // [16]
  'test/lib/file-reader.test.ts', // [15]
  'test/cli/export.test.ts', // [15]
  'test/cli/restore.test.ts', // [15]
  'test/cli/drill.test.ts', // [14]
  'test/media-format/contract.test.ts', // [14]
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

/** A command whose output is kept, and shown after the main run's. */
function inBackground(name, command, args, env = process.env) {
  const child = spawn(command, args, {env, stdio: ['ignore', 'pipe', 'pipe']})
  let output = ''
  const gather = (text) => {
    output += text
  }

  child.stdout.setEncoding('utf8').on('data', gather)
  child.stderr.setEncoding('utf8').on('data', gather)
  return new Promise((resolve) => {
    child.on('close', (status, signal) => resolve({name, output: () => output, status: status ?? signal}))
  })
}

const background = [
  // One V8 helper thread each, as the test workers have (.mocharc.cjs): the cores are full already.
  inBackground('The type check and the linters', 'sh', ['-c', 'npm run --silent typecheck && npm run --silent lint'], {
    ...process.env,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --v8-pool-size=1`.trim(),
  }),
  inBackground('A Node.js lane', process.execPath, ['scripts/test-lane.js', '22', '24']),
]

// The main run's report is shown as it comes, and kept: its failures are shown again at the very end,
// after the other reports, where a reader of the log's last lines (a CI summary) finds them.
const main = spawn(process.execPath, ['node_modules/mocha/bin/mocha.js', ...process.argv.slice(2), ...files], {
  stdio: ['inherit', 'pipe', 'inherit'],
})
let mainOutput = ''
main.stdout.setEncoding('utf8').on('data', (text) => {
  mainOutput += text
  process.stdout.write(text)
})
const mainStatus = await new Promise((resolve) => {
  main.on('close', (status, signal) => resolve(status ?? signal))
})
const failures = []
if (mainStatus !== 0) failures.push(`The main test run failed (exit ${mainStatus}).`)
const reports = [mainOutput]
for (const {name, output, status} of await Promise.all(background)) {
  process.stdout.write(`\n${output()}`)
  reports.push(output())
  if (status !== 0) failures.push(`${name} failed (exit ${status}).`)
}

// What failed, and one closing line for all the runs: their summary reporters' lines, added up.
const counts = {failed: 0, passed: 0, skipped: 0}
for (const report of reports)
  for (const [, passed, failed, skipped] of report.matchAll(/^tests: (\d+) passed, (\d+) failed, (\d+) skipped$/gm)) {
    counts.passed += Number(passed)
    counts.failed += Number(failed)
    counts.skipped += Number(skipped)
  }

const mainFailures = /^ {2}\d+ failing$[\s\S]*?(?=^tests: )/m.exec(mainOutput)
if (mainFailures) process.stdout.write(`\nThe main run's failures, again:\n\n${mainFailures[0].trimEnd()}\n`)
for (const failure of failures) console.error(`\n${failure}`)
process.stdout.write(`\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`)
process.exitCode = failures.length > 0 ? 1 : 0
