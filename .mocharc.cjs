// The test files are independent (each makes its own temp folders, servers on free ports and
// projects), so they run in parallel, a worker per core and at least two: most of the suite waits on
// child processes and disks, not on this one. The files are named on the command line (npm test:
// every test/**/*.test.ts), so that `npx mocha FILE` runs just that file.
const {availableParallelism} = require('node:os')

module.exports = {
  exit: true,
  forbidOnly: true,
  jobs: Math.max(2, availableParallelism()),
  'node-option': ['import=tsx'],
  parallel: true,
  reporter: 'test/summary-reporter.cjs',
  require: ['test/hooks.ts'],
  timeout: 900_000,
}
