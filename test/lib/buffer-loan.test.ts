import {expect} from 'chai'

import {BufferLender, freeNow, giveBack, lendToFree} from '../../src/lib/buffer-loan.js'

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

  // On every Node.js line: by ArrayBuffer.prototype.transfer where there is one, else by a message.
  describe('freeing now', () => {
    it('frees a buffer that owns all its memory, and leaves a view or a small pooled buffer whole', () => {
      const own = Buffer.allocUnsafeSlow(64 * 1024)
      const whole = Buffer.alloc(8192, 7)
      const pooled = Buffer.from('abc')
      freeNow(whole.subarray(1))
      freeNow(whole.subarray(0, 100))
      freeNow(pooled)
      freeNow(own)
      expect(own.buffer.byteLength).to.equal(0)
      expect(whole.every((byte) => byte === 7)).to.equal(true)
      expect(pooled.toString()).to.equal('abc')
    })

    it('frees a chunk lent to be freed once it is given back, whole, and not before', () => {
      const chunk = lendToFree(Buffer.allocUnsafeSlow(4096))
      giveBack(chunk.subarray(1))
      expect(chunk.buffer.byteLength).to.equal(4096)
      giveBack(chunk)
      expect(chunk.buffer.byteLength).to.equal(0)
      // A view is handed on as it is, not lent: giving it back frees nothing.
      const whole = Buffer.allocUnsafeSlow(4096)
      giveBack(lendToFree(whole.subarray(0, 10)))
      expect(whole.buffer.byteLength).to.equal(4096)
    })

    // Node.js 20 refuses to transfer it in a message; 22's ArrayBuffer.prototype.transfer detaches it anyway.
    it('never fails on a buffer marked untransferable: it is freed, or left whole', async () => {
      const {markAsUntransferable} = await import('node:worker_threads')
      const marked = Buffer.allocUnsafeSlow(4096).fill(3)
      markAsUntransferable(marked.buffer)
      expect(() => freeNow(marked)).to.not.throw()
      expect(marked.buffer.byteLength === 0 || marked.every((byte) => byte === 3)).to.equal(true)
    })
  })
})
