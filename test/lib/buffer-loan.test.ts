import {expect} from 'chai'

import {BufferLender, giveBack} from '../../src/lib/buffer-loan.js'

describe('buffer loans', () => {
  it('takes back a lent buffer once, whole, and only into the lender that lent it', () => {
    const lender = new BufferLender(4)
    const other = new BufferLender(4)
    const buffer = Buffer.allocUnsafeSlow(1024)
    const lent = lender.lend(buffer.subarray(0, 100))
    giveBack(lent)
    giveBack(lent)
    expect(other.borrowBack()).to.equal(undefined)
    expect(lender.borrowBack()).to.equal(buffer.buffer)
    expect(lender.borrowBack()).to.equal(undefined)
  })

  it('ignores a part of a lent buffer, which another stage may still hold the rest of', () => {
    const lender = new BufferLender(4)
    const lent = lender.lend(Buffer.allocUnsafeSlow(1024))
    giveBack(lent.subarray(0, 512))
    giveBack(lent.subarray(1))
    expect(lender.borrowBack()).to.equal(undefined)
    giveBack(lent)
    expect(lender.borrowBack()).to.equal(lent.buffer)
  })

  it('ignores what was never lent, and keeps no more spares than asked', () => {
    const lender = new BufferLender(2)
    giveBack(Buffer.from('not lent'))
    const lent = [1, 2, 3].map(() => lender.lend(Buffer.allocUnsafeSlow(16)))
    for (const buffer of lent) giveBack(buffer)
    expect([lender.borrowBack(), lender.borrowBack(), lender.borrowBack()].filter(Boolean)).to.have.length(2)
  })

  it('keeps nothing once cleared, until it lends again', () => {
    const lender = new BufferLender(4)
    const early = lender.lend(Buffer.allocUnsafeSlow(16))
    const late = lender.lend(Buffer.allocUnsafeSlow(16))
    giveBack(early)
    lender.clear()
    expect(lender.borrowBack()).to.equal(undefined)
    // Given back after the work is done: dropped, so that nothing stays in a host's process.
    giveBack(late)
    expect(lender.borrowBack()).to.equal(undefined)
    const next = lender.lend(Buffer.allocUnsafeSlow(16))
    giveBack(next)
    expect(lender.borrowBack()).to.equal(next.buffer)
  })
})
