import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {holdStoreRead, skipWithoutFuse} from '../helpers/mounts.js'
import {until} from '../helpers/processes.js'
import {cli, cliAsync, makeProject} from '../helpers/project.js'

const MiB = 1024 * 1024

/**
 * A media file that an app rewrites shorter while a backup reads it: its read is held half-way (a FUSE
 * mirror of the media folder, test/fixtures/holdfs.py), the file cut underneath, and the read let go,
 * whatever the machine's speed.
 */
describe('a media file that shrinks while it is read', function () {
  before(function () {
    skipWithoutFuse(this)
  })

  for (const format of ['tar', 'packs'] as const) {
    it(`${format}: ${format === 'tar' ? 'the backup fails, naming the file and what to do' : 'the file is stored as read, and the backup verifies'}`, async () => {
      const project = makeProject()
      const media = join(project.root, 'media')
      const original = randomBytes(4 * MiB)
      writeFileSync(join(media, 'big.bin'), original)
      const env = {...project.env, DIVIO_BACKUP_MEDIA_FORMAT: format}
      const hold = await holdStoreRead(media, 'big.bin', 2 * MiB)
      let stderr = ''
      let status: null | number
      try {
        const child = cliAsync({...project, env}, ['create'])
        child.stderr!.setEncoding('utf8').on('data', (text: string) => {
          stderr += text
        })
        const exited = new Promise<null | number>((resolve) => {
          child.on('close', resolve)
        })
        await until(hold.held, 'the read of big.bin is half-way')
        truncateSync(join(`${media}.real`, 'big.bin'), MiB)
        hold.letGo()
        status = await exited
      } finally {
        await hold.release()
      }

      if (format === 'tar') {
        // Its header, with the listed size, is in the stream already: the backup fails, and says why.
        expect(status, stderr).to.equal(7)
        expect(stderr).to.match(/The media file big\.bin shrank while it was being read: something rewrote it/)
        expect(stderr).to.include('"mediaFormat": "packs"').and.include('Nothing was left in the store.')
        expect((await cli(project, ['list', '--json'])).json()).to.deep.equal([])
        return
      }

      expect(status, stderr).to.equal(0)
      const verified = await cli({...project, env}, ['verify'])
      expect(verified.status, verified.stdout + verified.stderr).to.equal(0)
      const out = join(project.root, '..', 'out')
      expect((await cli({...project, env}, ['download', '--media-only', '-o', out])).status).to.equal(0)
      const stored = execFileSync('tar', ['-xOf', join(out, 'media.tar'), 'media/big.bin'], {maxBuffer: 8 * MiB})
      // What was read: the file's first bytes, never another file's or a reused buffer's (random bytes
      // here). The last read may come back as zeros: FUSE's kernel side fills a read that its server
      // answers short, where its cached size said there were bytes.
      expect(stored.length).to.be.within(MiB, 4 * MiB - 1)
      const read = stored.findIndex((byte, index) => byte !== original[index])
      const same = read === -1 ? stored.length : read
      expect(same, 'the first MiB, read before the hold').to.be.at.least(MiB)
      expect(
        stored.subarray(same).every((byte) => byte === 0),
        `bytes the file did not hold, from ${same} of ${stored.length}`,
      ).to.equal(true)
    })
  }
})
