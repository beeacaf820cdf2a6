// The test files are independent (each makes its own temp folders, servers on free ports and
// projects), so they run in parallel, a worker per core and one more: much of the suite waits on child
// processes, servers and disks, and the extra worker uses that time. The files are named on the command
// line (npm test: scripts/run-tests.js names every test/**/*.test.ts, longest first), so that
// `npx mocha FILE` runs just that file.
const {availableParallelism} = require('node:os')

module.exports = {
  exit: true,
  forbidOnly: true,
  jobs: availableParallelism() + 1,
  'node-option': ['import=tsx'],
  parallel: true,
  reporter: 'test/summary-reporter.cjs',
  require: ['test/hooks.ts'],
  timeout: 900_000,
}
