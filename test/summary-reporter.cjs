// The spec reporter, plus one plain closing line ("tests: N passed, N failed, N skipped") that any CI
// log reader understands.
const Mocha = require('mocha')

const {Spec} = Mocha.reporters
const {EVENT_RUN_END} = Mocha.Runner.constants

class SummaryReporter extends Spec {
  constructor(runner, options) {
    super(runner, options)
    runner.once(EVENT_RUN_END, () => {
      const {failures, passes, pending} = runner.stats
      process.stdout.write(`tests: ${passes} passed, ${failures} failed, ${pending} skipped\n`)
    })
  }
}

module.exports = SummaryReporter
