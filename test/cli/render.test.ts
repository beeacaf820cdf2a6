import {expect} from 'chai'

import {renderList} from '../../src/cli/render.js'
import {BackupView} from '../../src/domain/backup.js'

function view(files: number): BackupView {
  return {
    app: 'shop',
    completedAt: '2026-12-01T02:00:05.000Z',
    components: {media: {bytes: 2048, files, sha256: 'a'.repeat(64)}},
    createdAt: '2026-12-01T02:00:00.000Z',
    environment: 'live',
    id: '20261201T020000Z-abcdef',
    note: null,
    pinned: false,
    retention: {expiresAt: null, expiry: 'kept', keep: true, reason: 'on-demand, younger than 30 days'},
    status: 'complete',
    tier: 'on-demand',
    trigger: 'on-demand',
    writer: {detail: 'signed', id: 'divio-writer1x', status: 'authentic'},
  }
}

describe('list rendering', () => {
  it('counts files in words that agree with the number', () => {
    expect(renderList([view(1)], {app: 'shop', environment: 'live'})).to.include('2.0 KiB (1 file)')
    expect(renderList([view(0)], {app: 'shop', environment: 'live'})).to.include('2.0 KiB (0 files)')
    expect(renderList([view(2)], {app: 'shop', environment: 'live'})).to.include('2.0 KiB (2 files)')
  })
})
