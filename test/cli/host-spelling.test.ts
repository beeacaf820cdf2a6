import {expect} from 'chai'

import {spellCommands} from '../../src/cli/host.js'

describe('commands in messages are spelled the way the host spells them', () => {
  const heroku = {bin: 'heroku', topicSeparator: ':'}

  it('rewrites each mention with the host binary and topic separator', () => {
    expect(spellCommands('Run `divio app backup list --all` to see it.', heroku)).to.equal(
      'Run `heroku app:backup:list --all` to see it.',
    )
    expect(
      spellCommands('`divio app backup schedule run` from cron; `divio app backup verify 2026`.', heroku),
    ).to.equal('`heroku app:backup:schedule:run` from cron; `heroku app:backup:verify 2026`.')
    expect(spellCommands('see `divio app backup --help`', heroku)).to.equal('see `heroku app:backup --help`')
  })

  it('leaves the text alone in the divio CLI itself', () => {
    const text = 'Run `divio app backup list` and `divio app backup schedule show`.'
    expect(spellCommands(text, {bin: 'divio', topicSeparator: ' '})).to.equal(text)
  })
})
