import {expect} from 'chai'
import * as fc from 'fast-check'
import {setImmediate as setImmediatePromise} from 'node:timers/promises'

import {FoldersAhead} from '../../src/providers/media/filesystem.js'

/** A tree of folders only: each folder's subfolders by name. */
interface Tree {
  [name: string]: Tree
}

const {tree} = fc.letrec<{tree: Tree}>((tie) => ({
  tree: fc.oneof(
    {depthSize: 'small', maxDepth: 5},
    fc.constant({}),
    fc.dictionary(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f'), tie('tree'), {maxKeys: 4}),
  ),
}))

function subfolders(root: Tree, folder: string): string[] {
  let node = root
  if (folder !== '') for (const name of folder.split('/')) node = node[name]
  return Object.keys(node)
    .sort()
    .map((name) => (folder === '' ? name : `${folder}/${name}`))
}

/** Every folder, depth first, as the walk enters them. */
function depthFirst(root: Tree, folder = ''): string[] {
  return [folder, ...subfolders(root, folder).flatMap((sub) => depthFirst(root, sub))]
}

/**
 * Walks `root` as the media walk does, with listings that take `delays` turns of the event loop each
 * (as the reader thread's do). Returns the folders in the order they were listed and taken, the most
 * listings ever asked for and not yet taken, and how many folders were asked for before the walk got
 * there.
 */
async function walkAhead(root: Tree, delays: number[]) {
  const listed: string[] = []
  const taken: string[] = []
  const notTaken = new Set<string>()
  let mostNotTaken = 0
  let ready = 0
  const ahead = new FoldersAhead(async (folder) => {
    listed.push(folder)
    notTaken.add(folder)
    mostNotTaken = Math.max(mostNotTaken, notTaken.size)
    for (let turn = delays[listed.length % Math.max(delays.length, 1)] ?? 0; turn > 0; turn--) {
      await setImmediatePromise()
    }

    return folder
  })
  const walk = async (folder: string): Promise<void> => {
    taken.push(folder)
    if (listed.includes(folder)) ready++
    const listing = ahead.take(folder)
    notTaken.delete(folder)
    expect(await listing).to.equal(folder)
    ahead.enter(subfolders(root, folder))
    try {
      // The walk works through the folder's files meanwhile.
      await setImmediatePromise()
      for (const sub of subfolders(root, folder)) await walk(sub)
    } finally {
      ahead.leave()
    }
  }

  await walk('')
  return {listed, mostNotTaken, ready, taken}
}

describe('folders listed ahead of the walk', () => {
  it('lists every folder once, in walk order, each but the first before the walk gets there, one at a time', async () => {
    await fc.assert(
      fc.asyncProperty(tree, fc.array(fc.nat(3), {maxLength: 50}), async (root, delays) => {
        const {listed, mostNotTaken, ready, taken} = await walkAhead(root, delays)
        const expected = depthFirst(root)
        expect(taken).to.deep.equal(expected)
        expect(listed).to.deep.equal(expected)
        expect(mostNotTaken).to.equal(1)
        expect(ready).to.equal(expected.length - 1)
      }),
      {numRuns: 300},
    )
  })

  it('does the same over a wide tree, as uploads by month or thumbnails by size are laid out', async () => {
    const root: Tree = Object.fromEntries(
      Array.from({length: 100}, (_, index) => [
        `folder-${index}`,
        Object.fromEntries(Array.from({length: 10}, (_, leaf) => [`leaf-${leaf}`, {}])),
      ]),
    )
    const {listed, mostNotTaken, ready, taken} = await walkAhead(root, [2, 0, 1])
    expect(taken).to.have.length(1101)
    expect(listed).to.deep.equal(taken)
    expect(mostNotTaken).to.equal(1)
    expect(ready).to.equal(1100)
  })
})
