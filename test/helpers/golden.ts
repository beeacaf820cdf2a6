import {expect} from 'chai'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const goldenRoot = join(dirname(fileURLToPath(import.meta.url)), '..', 'golden')

/**
 * Compares `text` with test/golden/<name>.txt. UPDATE_GOLDEN=1 rewrites the file, and a missing one
 * is written on a developer's machine, never on CI, where it fails instead.
 */
export function expectGolden(name: string, text: string): void {
  const file = join(goldenRoot, `${name}.txt`)
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(file)) {
    if (process.env.CI && !existsSync(file)) throw new Error(`missing golden file ${file}`)
    mkdirSync(dirname(file), {recursive: true})
    writeFileSync(file, text)
  }

  expect(text).to.equal(readFileSync(file, 'utf8'))
}
