// The test files are independent (each makes its own temp folders, servers on free ports and
// projects), so they run in parallel, a worker per core and one more: much of the suite waits on child
// processes, servers and disks, and the extra worker uses that time. The files are named on the command
// line (npm test: scripts/run-tests.js names every test/**/*.test.ts, longest first), so that
// `npx mocha FILE` runs just that file.
//
// Each worker gets one V8 helper thread (--v8-pool-size=1) instead of four. The workers, the lanes and
// the linters already fill every core with a process each, and V8's helpers (concurrent marking,
// background compiling) only take turns with them: in two runs each, taken in turn on two cores, the
// suite used about 3% less CPU with one (docs/performance.md). The commands the tests start as
// processes of their own (peak RSS, signals) run as users run them: a worker's flags are not passed on
// to what it spawns.
const {availableParallelism} = require('node:os')

module.exports = {
  exit: true,
  forbidOnly: true,
  jobs: availableParallelism() + 1,
  'node-option': ['import=tsx', 'v8-pool-size=1'],
  parallel: true,
  reporter: 'test/summary-reporter.cjs',
  require: ['test/hooks.ts'],
  timeout: 900_000,
}
