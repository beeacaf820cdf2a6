import {expect} from 'chai'

import {isBackupId, newBackupId, timeOfBackupId} from '../../src/domain/ids.js'

describe('backup ids', () => {
  it('encode the UTC second and six base32 characters, and sort by time', () => {
    const id = newBackupId(new Date('2026-11-28T02:00:07.913Z'), new Uint8Array([0, 1, 2, 30, 31, 255]))
    expect(id).to.equal('20261128T020007Z-abc677')
    expect(isBackupId(id)).to.equal(true)
    expect(timeOfBackupId(id).toISOString()).to.equal('2026-11-28T02:00:07.000Z')
    const later = newBackupId(new Date('2026-11-28T02:00:08Z'), new Uint8Array(6))
    expect([later, id].sort()).to.deep.equal([id, later])
  })

  it('rejects anything else', () => {
    for (const text of ['20261128T020007Z-ABC677', '20261128T020007Z-abc67', '2026-11-28', '../x']) {
      expect(isBackupId(text), text).to.equal(false)
    }
  })
})
