import {expect} from 'chai'

import {renderInfo, renderList, wrap} from '../../src/cli/render.js'
import {BackupView} from '../../src/domain/backup.js'
import {BackupInfo} from '../../src/services/info.js'
import {expectGolden} from '../helpers/golden.js'

function view(overrides: Partial<BackupView> & {id: string}): BackupView {
  return {
    app: 'shop',
    completedAt: '2026-12-01T02:00:05.000Z',
    components: {database: {bytes: 5 * 1024 * 1024, engine: 'postgres', format: 'custom', sha256: 'b'.repeat(64)}},
    createdAt: '2026-12-01T02:00:00.000Z',
    drill: null,
    environment: 'live',
    note: null,
    pinned: false,
    retention: {
      expiresAt: '2026-12-08T01:00:00.000Z',
      expiry: 'removed after the scheduled backup of 2026-12-08 01:00 UTC',
      keep: true,
      keptAtLeastUntil: '2026-12-08T01:00:00.000Z',
      reason: 'daily (2026-12-01)',
    },
    status: 'complete',
    tier: 'daily',
    trigger: 'scheduled',
    writer: {detail: 'signed', id: 'divio-writer1x', status: 'authentic'},
    ...overrides,
  } as BackupView
}

const views: BackupView[] = [
  view({
    components: {
      database: {
        bytes: 5 * 1024 * 1024,
        engine: 'postgres',
        format: 'custom',
        serverVersion: '16',
        sha256: 'b'.repeat(64),
      },
      media: {bytes: 3 * 1024 ** 3, files: 20_412, sha256: 'a'.repeat(64)},
    },
    id: '20261203T091500Z-k3m9qa',
    note: 'before the migration of the orders table to the new schema, with a long explanation',
    retention: {
      expiresAt: null,
      expiry:
        'younger than 30 days until 2027-01-02 09:15 UTC; after that, kept while among the 3 newest older on-demand backups',
      keep: true,
      keptAtLeastUntil: '2027-01-02T09:15:00.000Z',
      reason: 'on-demand, younger than 30 days',
    },
    tier: 'on-demand',
    trigger: 'on-demand',
  }),
  view({
    drill: {
      endedAt: '2026-12-03T04:00:00.000Z',
      passed: true,
      summary: 'drilled 2026-12-03: 14 tables, 1,204,331 rows match',
    },
    id: '20261203T010000Z-ab12cd',
  }),
  view({id: '20261201T010000Z-pinned', note: 'keep: audit', pinned: true}),
  view({
    id: '20261101T010000Z-gone00',
    retention: {expiresAt: null, expiry: 'removed by the next prune', keep: false, keptAtLeastUntil: null, reason: 'x'},
    tier: null,
  }),
  view({components: {}, id: '20261202T010000Z-broken', status: 'damaged', tier: null, trigger: null}),
  view({components: {}, id: '20261203T100000Z-inprog', status: 'incomplete', tier: null, trigger: null}),
]

describe('rendering (golden files; UPDATE_GOLDEN=1 rewrites them)', () => {
  it('list: one line a backup within 80 columns, the note cut to fit, a legend for "+"', () => {
    const text = renderList(views, {app: 'shop', environment: 'live'})
    expectGolden('render/list', `${text}\n`)
    for (const line of text.split('\n')) expect([...line].length, line).to.be.at.most(80)
    expect(text).to.include('2027-01-02+')
    expect(text).to.include('…')
    expect(text).to.match(/^20261201T010000Z-pinned +daily +5\.0 MiB +pinned +- +keep: audit$/m)
  })

  it('info: short hashes within 100 columns, and all 64 digits with --verbose', () => {
    const info = {
      ...views[0],
      encryption: {format: 'age-v1', recipients: ['age1'.padEnd(62, 'q'), 'age1'.padEnd(62, 'z')]},
      objects: [
        {
          bytes: 3 * 1024 ** 3 + 4096,
          name: 'media.tar.age',
          plaintextBytes: 3 * 1024 ** 3,
          plaintextSha256: 'a'.repeat(64),
          sha256: 'c'.repeat(64),
        },
      ],
      store: {location: '/srv/backups/shop/live/20261203T091500Z-k3m9qa', storageClass: 'local folder'},
      tool: {name: '@divio/plugin-app-backup', version: '0.1.0'},
    } as unknown as BackupInfo
    const text = renderInfo(info, {calendar: {colour: false, lastDay: '2026-12-03', siblings: views}})
    expectGolden('render/info', `${text}\n`)
    expect(text).to.match(/^Thu \.+\*$/m)
    expect(text).to.match(/^Sun x\.+$/m)
    expect(text).to.include('* this backup')
    for (const line of text.split('\n')) expect([...line].length, line).to.be.at.most(100)
    expect(text).to.not.include('c'.repeat(13))
    expect(renderInfo(info, {verbose: true})).to.include('c'.repeat(64))
  })

  it('wrap breaks at spaces, indents what follows, and keeps a word longer than the width whole', () => {
    expect(wrap('Label       one two three four', 16, 12)).to.equal(
      'Label       one\n            two\n            three\n            four',
    )
    expect(wrap('x '.repeat(3) + 'y'.repeat(30), 10, 2)).to.equal(`x x x\n  ${'y'.repeat(30)}`)
  })
})
