import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

/**
 * Runs the raw export README's recipe for one backup, word for word but for its first line (the key,
 * the backup, its environment and the target), as a user would: saved as a script in the export's
 * folder and run with sh. Throws with what it printed to stderr when it stops; either way, it must
 * leave nothing in its temp folder. Resolves with how many of the backup's packs are compressed, and
 * how many are not, as its manifest records them.
 */
export function followRawRecipe(
  exportDir: string,
  options: {environment?: string; id: string; identityFile: string; target: string},
): {compressed: number; plain: number} {
  const readme = readFileSync(join(exportDir, 'README.txt'), 'utf8')
  const block = /\n( {4}KEY=[^\n]*\n(?: {4}[^\n]*\n)+)/.exec(readme)
  expect(block, 'the recipe in README.txt').to.not.equal(null)
  const script = join(exportDir, `rebuild-media-${randomBytes(4).toString('hex')}.sh`)
  const first = `KEY='${options.identityFile}' ID='${options.id}' ENV='${options.environment ?? 'local'}' OUT='${options.target}'`
  writeFileSync(script, block![1].replaceAll(/^ {4}/gm, '').replace(/^KEY=.*$/m, first))
  // Its own temp folder, to see that the plaintext blobs are gone however the recipe ends.
  const temp = mkdtempSync(join(exportDir, 'recipe-tmp-'))
  try {
    execFileSync('sh', [script], {
      cwd: exportDir,
      encoding: 'utf8',
      env: {PATH: process.env.PATH, TMPDIR: temp},
      stdio: 'pipe',
    })
  } catch (error) {
    throw new Error((error as {stderr?: string}).stderr || (error as Error).message)
  } finally {
    rmSync(script, {force: true})
    expect(readdirSync(temp), 'what the recipe left in its temp folder').to.deep.equal([])
    rmSync(temp, {recursive: true})
  }

  const manifest = JSON.parse(
    readFileSync(join(exportDir, options.environment ?? 'local', options.id, 'manifest.json'), 'utf8'),
  ) as {components: {media: {packObjects: {compression?: string}[]}}}
  const {packObjects} = manifest.components.media
  const compressed = packObjects.filter((pack) => pack.compression === 'zstd').length
  return {compressed, plain: packObjects.length - compressed}
}
