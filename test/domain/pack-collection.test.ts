import {expect} from 'chai'
import * as fc from 'fast-check'

import {CondemnMarker, ListedPack, planPackCollection} from '../../src/domain/pack-collection.js'

const HOUR = 3_600_000
const GRACE = 24 * HOUR
const NOW = new Date('2026-12-02T12:00:00Z')

function pack(name: string, hoursAgo = 48): ListedPack {
  return {modifiedAt: new Date(NOW.getTime() - hoursAgo * HOUR), name}
}

function marker(name: string, hoursAgo: number): CondemnMarker {
  return {condemnedAt: new Date(NOW.getTime() - hoursAgo * HOUR), pack: name}
}

describe('pack collection (two phases)', () => {
  it('condemns first, deletes only a grace period later, and pardons a pack that is referenced again', () => {
    const plan = planPackCollection({
      graceMs: GRACE,
      markers: [marker('b', 30), marker('c', 2), marker('d', 30), marker('gone', 30)],
      now: NOW,
      packs: [pack('a'), pack('b'), pack('c'), pack('d'), pack('kept')],
      referenced: new Set(['d', 'kept']),
    })
    expect(plan).to.deep.equal({
      condemn: ['a'],
      delete: ['b'],
      dropMarkers: ['gone'],
      pardon: ['d'],
      waiting: [{deletableFrom: new Date(NOW.getTime() + 22 * HOUR), pack: 'c'}],
    })
  })

  const scenario: fc.Arbitrary<Scenario> = fc.record({
    markedHoursAgo: fc.array(fc.option(fc.integer({max: 72, min: 0})), {maxLength: 16, minLength: 16}),
    packs: fc.uniqueArray(fc.constantFrom(...'abcdefghijklmnop'), {maxLength: 16}),
    referencedShare: fc.array(fc.boolean(), {maxLength: 16, minLength: 16}),
  })

  interface Scenario {
    markedHoursAgo: (null | number)[]
    packs: string[]
    referencedShare: boolean[]
  }

  function inputOf({markedHoursAgo, packs, referencedShare}: Scenario) {
    return {
      graceMs: GRACE,
      markers: packs.flatMap((name, index) =>
        markedHoursAgo[index] === null ? [] : [marker(name, markedHoursAgo[index]!)],
      ),
      now: NOW,
      packs: packs.map((name) => pack(name)),
      referenced: new Set(packs.filter((_, index) => referencedShare[index])),
    }
  }

  it('never condemns or deletes a referenced pack; deletes only what was condemned a grace period ago', () => {
    fc.assert(
      fc.property(scenario, (generated) => {
        const input = inputOf(generated)
        const plan = planPackCollection(input)
        for (const name of [...plan.condemn, ...plan.delete]) expect(input.referenced.has(name)).to.equal(false)
        const condemnedAt = new Map(input.markers.map((marker) => [marker.pack, marker.condemnedAt.getTime()]))
        for (const name of plan.delete) {
          expect(NOW.getTime() - condemnedAt.get(name)!).to.be.at.least(GRACE)
        }

        // Every pack is in exactly one place: referenced (kept), condemned, deleted or waiting.
        const placed = [
          ...plan.condemn,
          ...plan.delete,
          ...plan.waiting.map((entry) => entry.pack),
          ...input.packs.map((listed) => listed.name).filter((name) => input.referenced.has(name)),
        ].sort()
        expect(placed).to.deep.equal(input.packs.map((listed) => listed.name).sort())
      }),
    )
  })

  it('two runs a grace period apart remove every pack nothing references, and nothing else', () => {
    fc.assert(
      fc.property(scenario, (generated) => {
        const input = inputOf({...generated, markedHoursAgo: generated.markedHoursAgo.map(() => null)})
        const first = planPackCollection(input)
        const later = new Date(NOW.getTime() + GRACE)
        const second = planPackCollection({
          ...input,
          markers: first.condemn.map((name) => ({condemnedAt: NOW, pack: name})),
          now: later,
        })
        const unreferenced = input.packs.map((listed) => listed.name).filter((name) => !input.referenced.has(name))
        expect(first.delete).to.deep.equal([])
        expect(second.delete.sort()).to.deep.equal(unreferenced.sort())
      }),
    )
  })
})
