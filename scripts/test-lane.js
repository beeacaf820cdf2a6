#!/usr/bin/env node
// Runs the end-to-end CLI tests again under the other supported Node.js lines, with binaries from the
// npm registry (node-<platform>-<arch>): nothing to install beyond npm itself. Usage:
// test-lane.js 22 [24]. Several lanes run at once, each printing its report when it is done. The
// native better-sqlite3 built for the main Node.js does not load there, so a lane also shows that
// SQLite works without it (node:sqlite). The specs are in test/lanes.mocharc.json.
import {spawn} from 'node:child_process'

/** The versions the lanes pin: the maintenance LTS and the active LTS. */
const LANES = {22: '22.23.5', 24: '24.22.3'}

const majors = process.argv.slice(2)
const unknown = majors.filter((major) => LANES[major] === undefined)
if (majors.length === 0 || unknown.length > 0) {
  console.error(`Usage: node scripts/test-lane.js ${Object.keys(LANES).join('|')} [...]`)
  process.exitCode = 2
} else {
  const results = await Promise.all(majors.map((major) => runLane(major)))
  for (const {major, output, status} of results) {
    process.stdout.write(`\n=== Node.js ${LANES[major]} lane ===\n${output}`)
    if (status !== 0) {
      console.error(`\nThe Node.js ${LANES[major]} run failed (exit ${status}).`)
      process.exitCode = 1
    }
  }
}

/** One lane, its output gathered so that lanes running at once do not interleave. */
function runLane(major) {
  if (process.versions.node.startsWith(`${major}.`)) {
    return {major, output: `Already on Node.js ${process.version}: the main run was this lane.\n`, status: 0}
  }

  const packageName = `node-${process.platform}-${process.arch}@${LANES[major]}`
  const child = spawn(
    'npm',
    [
      'exec',
      '--yes',
      `--package=${packageName}`,
      '--',
      'node',
      'node_modules/mocha/bin/mocha.js',
      '--config',
      'test/lanes.mocharc.json',
    ],
    {env: {...process.env, NPM_CONFIG_UPDATE_NOTIFIER: 'false'}, stdio: ['ignore', 'pipe', 'pipe']},
  )
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (text) => {
    output += text
  })
  child.stderr.setEncoding('utf8').on('data', (text) => {
    output += text
  })
  return new Promise((resolve) => {
    child.on('close', (status, signal) => resolve({major, output, status: status ?? signal}))
  })
}
