import {expect} from 'chai'
import {Readable} from 'node:stream'

import {MANIFEST_NAME} from '../../src/domain/manifest.js'
import {listBackups} from '../../src/services/list.js'
import {MemoryStore} from '../../src/store/memory.js'
import {ObjectInfo} from '../../src/store/port.js'
import {contextFor} from '../helpers/context.js'
import {makeProject} from '../helpers/project.js'

/** A store holding one backup of shop/live, whose listing of the whole store never ends. */
class StoreWithHangingRoot extends MemoryStore {
  constructor(private readonly hangs: boolean) {
    super()
  }

  override async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (prefix === '' && this.hangs) await new Promise(() => {})
    yield* super.list(prefix)
  }
}

describe('the hint of list at the environments a store holds', () => {
  for (const hangs of [false, true]) {
    it(
      hangs ? 'is dropped, not waited for, when the store stops answering' : 'names the environments the store holds',
      async () => {
        const project = makeProject()
        const store = new StoreWithHangingRoot(hangs)
        await store.put(`shop/live/20261201T020000Z-aaaa/${MANIFEST_NAME}`, Readable.from([Buffer.from('{}')]))
        const notices: string[] = []
        const context = {
          ...(await contextFor(project, {}, store)),
          reporter: {
            detail() {},
            interactive: false,
            notice: (line: string) => notices.push(line),
            progress() {
              throw new Error('no progress expected')
            },
          },
          stallTimeoutMs: 200,
        }
        const listed = await listBackups(context, {all: false, hintAtOthers: true})
        expect(listed).to.deep.equal([])
        if (hangs) expect(notices).to.deep.equal([])
        else {
          expect(notices).to.have.length(1)
          expect(notices[0]).to.match(
            /^hint: shop\/local has no backups, but the store holds shop\/live \(1 backup\)\. Pass -e live/,
          )
        }
      },
    )
  }
})
