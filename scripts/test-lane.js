#!/usr/bin/env node
// Runs the end-to-end CLI tests again under another supported Node.js, with a binary from the npm
// registry (node-<platform>-<arch>): nothing to install beyond npm itself. Usage: test-lane.js 22|24.
// The native better-sqlite3 built for the main Node.js does not load there, so a lane also shows that
// SQLite works without it (node:sqlite). The specs are in test/lanes.mocharc.json.
import {spawnSync} from 'node:child_process'

/** The versions the lanes pin: the maintenance LTS and the active LTS. */
const LANES = {22: '22.23.5', 24: '24.22.3'}

const major = process.argv[2]
const version = LANES[major]
if (version === undefined) {
  console.error(`Usage: node scripts/test-lane.js ${Object.keys(LANES).join('|')}`)
  process.exitCode = 2
} else if (process.versions.node.startsWith(`${major}.`)) {
  console.log(`Already on Node.js ${process.version}: the main run was the Node ${major} run.`)
} else {
  process.exitCode = runUnder(version)
}

function runUnder(pinned) {
  const packageName = `node-${process.platform}-${process.arch}@${pinned}`
  const result = spawnSync(
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
    {env: {...process.env, NPM_CONFIG_UPDATE_NOTIFIER: 'false'}, stdio: 'inherit'},
  )
  if (result.status !== 0) console.error(`\nThe Node.js ${pinned} run failed (exit ${result.status ?? result.signal}).`)
  return result.status ?? 1
}
