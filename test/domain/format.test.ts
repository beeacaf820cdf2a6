import {expect} from 'chai'

import {countOf} from '../../src/domain/format.js'

describe('countOf', () => {
  it('uses the singular for exactly one, and the plural for everything else', () => {
    expect([0, 1, 2, 1000].map((count) => countOf(count, 'file'))).to.deep.equal([
      '0 files',
      '1 file',
      '2 files',
      '1000 files',
    ])
    expect(countOf(1, 'extra object')).to.equal('1 extra object')
    expect(countOf(3, 'entry', 'entries')).to.equal('3 entries')
  })
})
