import {expect} from 'chai'
import {Readable} from 'node:stream'

import {readsSandboxLine, withoutSandboxLine} from '../../src/providers/database/mysql-sandbox.js'
import {collect} from '../helpers/tools.js'

const SANDBOX = '/*M!999999\\- enable the sandbox mode */ \n'
const REST =
  '-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n\nCREATE TABLE `t` (`x` int);\nINSERT INTO `t` VALUES (1);\n'

/** `text` through the filter, cut into chunks at `cuts`. */
async function filtered(text: string, cuts: number[]): Promise<string> {
  const bytes = Buffer.from(text)
  const chunks = [0, ...cuts, bytes.length]
    .slice(1)
    .map((end, index, ends) => bytes.subarray(index === 0 ? 0 : ends[index - 1], end))
  return (await collect(withoutSandboxLine(Readable.from(chunks.filter((chunk) => chunk.length > 0))))).toString()
}

describe("mariadb-dump's sandbox line, for MySQL's client (withoutSandboxLine)", () => {
  it('drops the first line when it is the sandbox line, wherever the chunks are cut, and nothing else', async () => {
    const dump = SANDBOX + REST
    for (let cut = 0; cut <= dump.length; cut++) {
      expect(await filtered(dump, [cut]), `cut at ${cut}`).to.equal(REST)
      expect(await filtered(dump, [cut, Math.min(dump.length, cut + 1), Math.min(dump.length, cut + 7)])).to.equal(REST)
    }
  })

  it('passes anything else through whole: another first line, the line later on, a long line, nothing at all', async () => {
    for (const dump of [
      REST,
      REST + SANDBOX,
      `${'x'.repeat(300)}${SANDBOX}`,
      'SELECT 1;',
      '',
      SANDBOX.replace('sandbox', 'sandbag'),
    ]) {
      for (const cut of [0, 1, 41, 200, 299]) expect(await filtered(dump, [Math.min(cut, dump.length)])).to.equal(dump)
    }

    // A dump of nothing but the line, with or without its end.
    expect(await filtered(SANDBOX, [])).to.equal('')
    expect(await filtered(SANDBOX.trimEnd(), [])).to.equal('')
    expect(await filtered(SANDBOX.replace('\n', '\r\n') + REST, [3])).to.equal(REST)
  })

  it("knows MariaDB's client by its --version, and MySQL's as not it", () => {
    expect(
      readsSandboxLine(
        'mysql  Ver 15.1 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64) using  EditLine wrapper',
      ),
    ).to.equal(true)
    expect(readsSandboxLine('mariadb from 11.4.2-MariaDB, client 15.2 for Linux (x86_64)')).to.equal(true)
    expect(readsSandboxLine('mysql  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)')).to.equal(false)
  })
})
