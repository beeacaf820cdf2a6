import {corruptionSweep} from '../helpers/corruption-sweep.js'

// The database object and the manifest are read as in the tar format, whose sweep damages them.
describe('corruption sweep (packs format): every media object and pack, every kind of damage, every reader', function () {
  it('is caught by verify, download and restore with exit 4, leaving nothing behind', () => {
    const media = ['media.index.gz.age', 'media.rebuild.sh.age']
    return corruptionSweep('packs', {
      editManifest: false,
      objects: ['database.sqlite3.zst.age', ...media],
      packs: 2,
      swept: media,
    })
  })
})
