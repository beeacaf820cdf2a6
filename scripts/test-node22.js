#!/usr/bin/env node
// Runs the end-to-end CLI tests again under Node.js 22, the next supported version, with a Node 22
// binary from the npm registry (node-<platform>-<arch>): nothing to install beyond npm itself. The
// native better-sqlite3 built for the main Node.js does not load there, so this run also shows that
// SQLite works without it (node:sqlite).
import {spawnSync} from 'node:child_process'

const NODE_22 = '22.23.5'
// The specs are in test/node22.mocharc.json.

if (process.versions.node.startsWith('22.')) {
  console.log(`Already on Node.js ${process.version}: the main run was the Node 22 run.`)
} else {
  process.exitCode = runUnderNode22()
}

function runUnderNode22() {
  const packageName = `node-${process.platform}-${process.arch}@${NODE_22}`
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
      'test/node22.mocharc.json',
    ],
    {env: {...process.env, NPM_CONFIG_UPDATE_NOTIFIER: 'false'}, stdio: 'inherit'},
  )
  if (result.status !== 0)
    console.error(`\nThe Node.js ${NODE_22} run failed (exit ${result.status ?? result.signal}).`)
  return result.status ?? 1
}
