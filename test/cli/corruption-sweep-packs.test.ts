import {corruptionSweep} from '../helpers/corruption-sweep.js'

describe('corruption sweep (packs format): every object, every kind of damage, every reader', function () {
  it('is caught by verify, download and restore with exit 4, leaving nothing behind', () =>
    corruptionSweep('packs', {
      objects: ['database.sqlite3.zst.age', 'media.index.gz.age', 'media.rebuild.sh.age'],
      packs: 2,
    }))
})
