import {corruptionSweep} from '../helpers/corruption-sweep.js'

describe('corruption sweep (tar format): every object, every kind of damage, every reader', function () {
  it('is caught by verify, download and restore with exit 4, leaving nothing behind', () => {
    const objects = ['database.sqlite3.zst.age', 'media.manifest.json.age', 'media.tar.age']
    return corruptionSweep('tar', {editManifest: true, objects, packs: 0, swept: objects})
  })
})
