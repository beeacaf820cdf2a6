import {expect} from 'chai'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'

import {repoRoot} from '../helpers/project.js'

/** The pages users read: the README, the manual in docs/, and CONTRIBUTING.md. */
function pages(): string[] {
  const docs = join(repoRoot, 'docs')
  return [
    join(repoRoot, 'README.md'),
    join(repoRoot, 'CONTRIBUTING.md'),
    ...readdirSync(docs)
      .filter((name) => name.endsWith('.md'))
      .map((name) => join(docs, name)),
  ]
}

/** A page's lines outside fenced code blocks, where `#` starts a heading and `[x](y)` is a link. */
function prose(path: string): string[] {
  let fenced = false
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      if (line.startsWith('```')) fenced = !fenced
      return !fenced && !line.startsWith('```')
    })
}

/** The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as `-`. */
function anchorsOf(path: string): Set<string> {
  const anchors = new Set<string>()
  for (const line of prose(path)) {
    const heading = /^#+ (.*)$/.exec(line)
    if (heading === null) continue
    const anchor = heading[1]
      .toLowerCase()
      .replaceAll(/[^\p{L}\p{N}\- _]/gu, '')
      .replaceAll(' ', '-')
    let unique = anchor
    for (let count = 1; anchors.has(unique); count++) unique = `${anchor}-${count}`
    anchors.add(unique)
  }

  return anchors
}

describe('documentation', () => {
  it('every link between the README, CONTRIBUTING.md and docs/ leads to a page and a heading that exist', () => {
    const links: string[] = []
    const broken: string[] = []
    for (const page of pages()) {
      for (const line of prose(page)) {
        for (const [, target] of line.matchAll(/\]\(([^)\s]+)\)/g)) {
          if (/^(https?|mailto):/.test(target)) continue
          const [file, anchor] = target.split('#')
          const destination = file === '' ? page : resolve(dirname(page), file)
          const where = `${relative(repoRoot, page)} → ${target}`
          links.push(where)
          if (!existsSync(destination)) broken.push(`${where}: no such file`)
          else if (anchor !== undefined && destination.endsWith('.md') && !anchorsOf(destination).has(anchor))
            broken.push(`${where}: no such heading`)
        }
      }
    }

    expect(broken).to.deep.equal([])
    // The README links into every page of the manual, and the manual into itself.
    expect(links.filter((link) => link.startsWith('README.md → docs/')).length).to.be.at.least(11)
    expect(links.length).to.be.above(40)
  })

  it('the README is a front door: at most about 250 lines, with the two quick-start commands', () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8')
    expect(readme.split('\n').length).to.be.at.most(250)
    expect(readme).to.include('```sh\nnpm ci && npm run demo\nnpm test\n```')
  })
})
